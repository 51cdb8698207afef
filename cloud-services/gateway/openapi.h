// The OpenAPI 3.0 document of the REST gateway, generated from the same descriptors and
// google.api.http routes the transcoder serves, so the two cannot drift apart.
#pragma once

#include <string>
#include <vector>

#include "gateway/transcoder.h"

namespace strata::gateway {

// The document as JSON text. Streaming routes are left out (they are gRPC only); the built-in
// /healthz, /readyz and /metrics are included. Schemas follow the canonical JSON mapping with
// proto field names, as the gateway prints responses.
std::string OpenApiDocument(const std::vector<Route>& routes);

}  // namespace strata::gateway
