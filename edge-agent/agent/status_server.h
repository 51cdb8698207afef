// The edge's local HTTP port: /healthz, Prometheus /metrics, and /status (JSON) for a field
// engineer on site, with or without a cloud. One thread serving one request per connection:
// it is a diagnostics port, not an API.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

namespace strata::edge {

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class StatusServer {
 public:
  using Handler = std::function<HttpReply(const std::string& target)>;
  static absl::StatusOr<std::unique_ptr<StatusServer>> Start(const std::string& host, std::uint16_t port,
                                                             Handler handler);
  virtual ~StatusServer() = default;
  virtual std::uint16_t Port() const = 0;
  virtual void Stop() = 0;
};

// GET http://host:port/target; for `strata-edge status`.
absl::StatusOr<std::string> HttpGet(const std::string& host, std::uint16_t port, const std::string& target);

}  // namespace strata::edge
