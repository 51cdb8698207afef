// Opaque page tokens for keyset paging. A token carries where the previous page ended; it is
// URL-safe base64 of a small versioned text, so clients must not build or parse it.
#pragma once

#include <string>
#include <string_view>

#include <absl/status/statusor.h>

#include "storage/store.h"

namespace strata::services {

std::string EncodeIdToken(std::string_view last_id);
// INVALID_ARGUMENT for a token that was not made by EncodeIdToken.
absl::StatusOr<std::string> DecodeIdToken(std::string_view token);

std::string EncodeTelemetryToken(const storage::TelemetryCursor& cursor);
absl::StatusOr<storage::TelemetryCursor> DecodeTelemetryToken(std::string_view token);

}  // namespace strata::services
