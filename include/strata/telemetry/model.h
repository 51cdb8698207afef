// The telemetry model: what a reading is, wherever it enters. The edge decoder (MQTT), the
// Telemetry API (gRPC and REST), the edge hub and both storage backends apply these checks,
// so every path accepts and refuses exactly the same readings, with the same message, and
// whatever passes them can be stored by either backend.
//
//   key    1..256 bytes of valid UTF-8 without control characters
//   ts     integer milliseconds in [kMinTs, kMaxTs]: 1970-01-01 to 9999-12-31 UTC
//   value  exactly one of: a double (not NaN), an int64, a bool, a string of at most
//          kMaxStringBytes bytes of valid UTF-8 without NUL
//
// From JSON: a number literal with a fraction or exponent is a double ("21.0", "1e3"); an
// integer literal is an int64, and one beyond int64 an error; true/false are bools; strings
// are strings; null, lists and objects are refused. A ts is an integer or, as protobuf's
// JSON mapping writes int64, a string of decimal digits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <nlohmann/json_fwd.hpp>

#include "strata/v1/common.pb.h"

namespace strata::telemetry {

inline constexpr std::int64_t kMinTs = 0;
inline constexpr std::int64_t kMaxTs = 253402300799999;  // 9999-12-31T23:59:59.999Z
inline constexpr std::size_t kMaxStringBytes = 4096;

// Why a reading was refused; also the `reason` label of the counters that count refusals.
enum class Reason { kOk, kInvalidKey, kInvalidTimestamp, kInvalidValue, kWrongType };
inline constexpr Reason kAllReasons[] = {Reason::kInvalidKey, Reason::kInvalidTimestamp, Reason::kInvalidValue,
                                         Reason::kWrongType};
const char* ReasonLabel(Reason reason);

// The outcome of a check: kOk, or the reason with a message for the client and the log.
struct [[nodiscard]] Verdict {
  Reason reason = Reason::kOk;
  std::string message;

  bool ok() const { return reason == Reason::kOk; }
  // INVALID_ARGUMENT("<context>: <message>"), or OK.
  absl::Status ToStatus(std::string_view context = {}) const;
};

Verdict CheckKey(std::string_view key);
Verdict CheckTimestamp(std::int64_t ts);
Verdict CheckValue(const v1::Value& value);
// Key, then ts, then value: the first that fails.
Verdict CheckReading(std::string_view key, std::int64_t ts, const v1::Value& value);

// A JSON value (from ParseBoundedJson) as a checked telemetry value.
Verdict ValueFromJson(const nlohmann::json& json, v1::Value* out);
// A JSON ts (integer, or decimal digits in a string) as a checked timestamp.
Verdict TimestampFromJson(const nlohmann::json& json, std::int64_t* out);

}  // namespace strata::telemetry
