// Who is calling: the principal every service method acts for, taken from the call's
// metadata in one place. Today every caller acts on the tenant "default" (authentication
// comes with the security work); the stores already take the tenant from here, so that
// filtering by tenant is a matter of filling this in.
//
// A function each method calls first rather than a gRPC server interceptor: gRPC C++'s
// interceptors can neither fail a call with a status nor hand a value to the handler
// without a side table keyed by call. REST requests arrive here too, with the metadata the
// gateway forwards (Authorization, x-request-id, Grpc-Metadata-*).
#pragma once

#include <string>

#include <absl/status/statusor.h>
#include <grpcpp/server_context.h>

namespace strata::services {

struct RequestContext {
  std::string tenant;      // every read and write is scoped to it
  std::string caller;      // for the log: the key or certificate name once there is one, else the peer
  std::string request_id;  // x-request-id, when the client sent one
};

// UNAUTHENTICATED or PERMISSION_DENIED once credentials are checked; for now always a context
// on the default tenant.
absl::StatusOr<RequestContext> ResolveCaller(const grpc::ServerContext& context);

}  // namespace strata::services
