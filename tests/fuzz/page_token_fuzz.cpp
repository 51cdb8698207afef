// libFuzzer target: page tokens come back from clients as they like. Decoding refuses what
// EncodeIdToken / EncodeTelemetryToken did not make, and what they made round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "services/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto id = strata::services::DecodeIdToken(in); id.ok()) {
    if (strata::services::DecodeIdToken(strata::services::EncodeIdToken(*id)).value_or("\x01") != *id) std::abort();
  }
  if (auto c = strata::services::DecodeTelemetryToken(in); c.ok()) {
    auto again = strata::services::DecodeTelemetryToken(strata::services::EncodeTelemetryToken(*c));
    if (!again.ok() || again->ts != c->ts || again->key != c->key) std::abort();
  }
  return 0;
}
