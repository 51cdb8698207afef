// JSON parsing with bounded cost, for every place where JSON from outside enters: MQTT
// payloads at the edge and REST bodies in the cloud.
//
// nlohmann's own DOM parser allocates one node per nesting level, so an 8 MB body of '['
// costs over a gigabyte before anything can look at it. ParseBoundedJson builds the same DOM
// from nlohmann's SAX events and stops at the first container deeper than the limit, so the
// cost of a hostile document is bounded by its size, never multiplied by its depth.
//
// It also fixes how number literals are typed, the rule of the telemetry model: a literal
// with a fraction or an exponent is a double; an integer literal is an int64 (or, above
// INT64_MAX, a uint64 up to UINT64_MAX); a larger integer literal, or a number too large for
// a double, is an error, never a silent rounding.
#pragma once

#include <cstddef>
#include <string_view>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace strata::telemetry {

// Nesting deeper than any telemetry payload or API body needs (they use 3 or 4 levels).
inline constexpr int kMaxJsonDepth = 32;

// The document, or INVALID_ARGUMENT saying what is wrong and where (byte offset).
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace strata::telemetry
