// The REST gateway: HTTP/1.1 on Boost.Beast, transcoded generically to the gRPC services from
// their google.api.http annotations with protobuf's canonical JSON mapping. There is no
// handler per endpoint: a route table is built from the service descriptors at start-up, and
// each request becomes one call through a grpc::GenericStub on the given channel (an
// in-process channel when the services run in the same process), so REST and gRPC share
// every code path behind the method.
//
// Also served: /healthz (process alive), /readyz (hooks.ready), /metrics (hooks.metrics, the
// Prometheus text format) and /openapi.json (generated from the same descriptors).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/channel.h>

namespace strata::gateway {

struct RestGatewayOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 picks a free port; see RestGateway::Port()
  int threads = 2;
  // Requests with a larger body are answered 413.
  std::size_t max_body_bytes = 8 * 1024 * 1024;
};

struct HttpHooks {
  std::function<std::string()> metrics;  // body of GET /metrics
  std::function<bool()> ready;           // GET /readyz: 200 when true, else 503
  // A request refused before any gRPC call (no route, a bad body or query, too large,
  // malformed HTTP), with the HTTP status it was answered with: the gateway's rejections,
  // counted where they happen.
  std::function<void(int http_status)> rejected;
};

class RestGateway {
 public:
  // Builds the routes of the named services (full names, e.g. "strata.v1.DeviceRegistry"),
  // binds the listening socket and starts serving. Errors: INVALID_ARGUMENT for an unknown
  // service or a malformed annotation, UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<RestGateway>> Create(const RestGatewayOptions& options,
                                                             std::shared_ptr<grpc::Channel> channel,
                                                             const std::vector<std::string>& services,
                                                             HttpHooks hooks);
  virtual ~RestGateway() = default;

  // The bound port (useful with port 0).
  virtual std::uint16_t Port() const = 0;

  // Stops accepting, lets in-flight requests finish (bounded wait), joins the threads.
  virtual void Shutdown() = 0;
};

}  // namespace strata::gateway
