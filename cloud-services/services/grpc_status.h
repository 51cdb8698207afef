// absl::Status (what the storage layer and validation return) to grpc::Status (what a
// service method returns). Both use the canonical gRPC codes, so the code carries over as is.
#pragma once

#include <absl/status/status.h>
#include <grpcpp/support/status.h>

namespace strata::services {

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace strata::services
