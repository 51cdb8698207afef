#include "services/page_token.h"

#include <charconv>

#include <absl/strings/escaping.h>

namespace strata::services {
namespace {

constexpr std::string_view kIdPrefix = "id1:";
constexpr std::string_view kTelemetryPrefix = "ts1:";

absl::Status BadToken() { return absl::InvalidArgumentError("page_token is not a token this API issued"); }

}  // namespace

std::string EncodeIdToken(std::string_view last_id) {
  return absl::WebSafeBase64Escape(std::string(kIdPrefix) + std::string(last_id));
}

absl::StatusOr<std::string> DecodeIdToken(std::string_view token) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &raw) || raw.rfind(kIdPrefix, 0) != 0) return BadToken();
  return raw.substr(kIdPrefix.size());
}

std::string EncodeTelemetryToken(const storage::TelemetryCursor& cursor) {
  return absl::WebSafeBase64Escape(std::string(kTelemetryPrefix) + std::to_string(cursor.ts) + ":" + cursor.key);
}

absl::StatusOr<storage::TelemetryCursor> DecodeTelemetryToken(std::string_view token) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &raw) || raw.rfind(kTelemetryPrefix, 0) != 0) return BadToken();
  std::string_view rest(raw);
  rest.remove_prefix(kTelemetryPrefix.size());
  auto colon = rest.find(':');
  if (colon == std::string_view::npos) return BadToken();
  storage::TelemetryCursor cursor;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + colon, cursor.ts);
  if (ec != std::errc() || p != rest.data() + colon) return BadToken();
  cursor.key = std::string(rest.substr(colon + 1));
  return cursor;
}

}  // namespace strata::services
