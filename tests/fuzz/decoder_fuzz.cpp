// libFuzzer target: the edge's MQTT payload decoder, on any topic and payload. Whatever comes
// in, the decoder accepts (readings that pass the telemetry model) or rejects with a reason;
// it never crashes, and a second decode of the same input gives the same answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <strata/telemetry/model.h>

#include "agent/decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const strata::edge::Decoder decoder("v1/devices", strata::edge::DecodeLimits{64 * 1024, 1000});
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // The first line is the topic's device id, the rest the payload.
  const auto nl = in.find('\n');
  const std::string topic = "v1/devices/" + std::string(nl == std::string_view::npos ? "d1" : in.substr(0, nl)) +
                            "/telemetry";
  const std::string_view payload = nl == std::string_view::npos ? in : in.substr(nl + 1);
  strata::edge::DecodeResult a, b;
  decoder.Decode(topic, payload, 1700000000000, a);
  decoder.Decode(topic, payload, 1700000000000, b);
  if (a.ok != b.ok || a.items.size() != b.items.size()) std::abort();
  if (a.ok == a.items.empty()) std::abort();  // accepted means at least one reading
  for (const auto& item : a.items) {
    if (!strata::telemetry::CheckReading(item.key, item.ts, item.value).ok()) std::abort();
  }
  return 0;
}
