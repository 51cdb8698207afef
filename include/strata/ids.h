// Validation of the identifiers that travel through every layer: device ids and edge ids
// appear in MQTT topics, URL paths and SQL parameters, so they are checked once, the same way,
// wherever they enter.
#pragma once

#include <string>
#include <string_view>

#include <absl/status/status.h>

namespace strata {

inline constexpr std::size_t kMaxIdBytes = 128;
inline constexpr std::size_t kMaxKeyBytes = 256;

// OK when `id` is 1..128 bytes of valid UTF-8 with no '/', '+', '#' or control characters. `what` names the
// field in the error ("device_id").
[[nodiscard]] absl::Status ValidateId(std::string_view what, std::string_view id);

// OK when a telemetry key is 1..256 bytes of valid UTF-8 without control characters.
[[nodiscard]] absl::Status ValidateKey(std::string_view key);

// 32 hex digits from the system's random source, for ids the cloud chooses (commands,
// alarms, rules): unguessable, so one tenant cannot find another's by counting.
std::string RandomId();

}  // namespace strata
