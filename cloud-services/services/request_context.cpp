#include "services/request_context.h"

#include "storage/store.h"

namespace strata::services {

absl::StatusOr<RequestContext> ResolveCaller(const grpc::ServerContext& context) {
  RequestContext out;
  out.tenant = std::string(storage::kDefaultTenant);
  out.caller = context.peer();
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("x-request-id"); it != metadata.end()) {
    out.request_id.assign(it->second.data(), it->second.size());
  }
  return out;
}

}  // namespace strata::services
