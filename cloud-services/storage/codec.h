// What both storage backends encode the same way: string maps (labels, attributes) as JSON
// objects, doubles as exact text, and the input checks made before any SQL runs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <google/protobuf/map.h>

#include "storage/store.h"

namespace strata::storage {

using StringMap = google::protobuf::Map<std::string, std::string>;

// A count as the int64 a column holds (values above 2^63-1 become 2^63-1).
inline std::int64_t ClampToInt64(std::uint64_t v) {
  return v > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(v);
}

// {"k":"v",...}, keys sorted.
std::string EncodeStringMap(const StringMap& map);
// Fills `out` from a JSON object of strings; non-string members are kept as their JSON text.
absl::Status DecodeStringMap(std::string_view json, StringMap* out);

// An edge's settings from their stored proto JSON ('{}' when none were set).
absl::Status DecodeEdgeSettings(std::string_view json, v1::EdgeSettings* out);

// The label filter as one JSON object for a containment match, or nullopt when no device can
// match (the same label asked for with two different values).
std::optional<std::string> LabelFilterJson(const std::vector<std::pair<std::string, std::string>>& labels);

// ["a","b"]: a list of strings as a JSON array (SQLite binds key lists this way).
std::string EncodeJsonArray(const std::vector<std::string>& items);

// {"a","b"}: a list of strings as a PostgreSQL text[] literal, for binding as $n::text[].
std::string EncodePgTextArray(const std::vector<std::string>& items);

// Shortest text that reads back as the same double ("inf", "-inf" for infinities).
std::string FormatDouble(double v);

// INVALID_ARGUMENT unless every reading passes the telemetry model
// (<strata/telemetry/model.h>): both backends store exactly what it accepts.
absl::Status ValidatePoints(const std::vector<Point>& points);
absl::Status ValidateBatch(const v1::TelemetryBatch& batch);
// ApplyEdgeBatches' input: a named edge and batches that ValidateBatch() accepts.
absl::Status CheckEdgeBatches(std::string_view edge_id, std::span<const v1::TelemetryBatch* const> batches);
// A ConfigAck the stores take: a revision of at least 1, a reason of at most
// kMaxConfigErrorBytes of valid UTF-8 without NUL (it goes into a text column).
inline constexpr std::size_t kMaxConfigErrorBytes = 1024;
absl::Status CheckConfigAck(const v1::ConfigAck& ack);
// The text kept for a refused revision: "revision N: <reason>".
std::string ConfigRefusal(const v1::ConfigAck& ack);
// INVALID_ARGUMENT "empty <field>" for an empty id.
absl::Status CheckId(std::string_view field, std::string_view id);

// The statuses a backend returns for its own failures, in the API's words: the backend's
// text (which may name hosts, tables or SQL) goes to the log only. `detail` is logged once
// here (debug for a conflict, warn for unavailable, error otherwise).
absl::Status ConflictError(std::string_view backend, std::string_view detail);
absl::Status UnavailableDbError(std::string_view backend, std::string_view detail);
absl::Status InternalDbError(std::string_view backend, std::string_view detail);

// NOT_FOUND: "device 'pump-1' not found".
absl::Status NotFound(std::string_view kind, std::string_view id);

// A conflict on create as "<what> already exists" ("device 'pump-1' already exists").
template <typename T>
absl::StatusOr<T> NameConflict(absl::StatusOr<T> result, std::string_view what) {
  if (result.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(std::string(what) + " already exists");
  }
  return result;
}

// ABORTED: the writing session of `edge_id` was replaced by a newer one (see EdgeSession).
absl::Status SupersededError(std::string_view edge_id, std::uint64_t session_epoch, std::uint64_t current_epoch);

// One series per requested key, in request order, with the buckets found for it (none for a
// key without numeric data): the shape both backends return from Aggregate.
std::vector<v1::AggregateSeries> SeriesInKeyOrder(const std::vector<std::string>& keys,
                                                  const std::map<std::string, std::vector<v1::Bucket>>& by_key);

// The kinds stored in the telemetry tables: one nullable column per kind, in this order
// (v_double, v_int, v_bool, v_string).
enum class ValueKind : int { kDouble = 1, kInt = 2, kBool = 3, kString = 4 };

// The one switch over a value's kind on the write side: calls on(kind, x) with x a double,
// std::int64_t, bool or std::string_view. A value without a kind (refused by ValidatePoints()
// and ValidateBatch() before any backend sees it) goes as the empty string.
template <typename On>
decltype(auto) VisitValue(const v1::Value& v, On&& on) {
  switch (v.kind_case()) {
    case v1::Value::kDoubleValue: return on(ValueKind::kDouble, v.double_value());
    case v1::Value::kIntValue: return on(ValueKind::kInt, static_cast<std::int64_t>(v.int_value()));
    case v1::Value::kBoolValue: return on(ValueKind::kBool, v.bool_value());
    case v1::Value::kStringValue:
    case v1::Value::KIND_NOT_SET: break;
  }
  return on(ValueKind::kString, std::string_view(v.string_value()));
}

// A value as the text PostgreSQL reads back as the same value of its column's type
// (COPY and the staging table carry text).
struct ValueText {
  ValueKind kind;
  std::string text;
};
ValueText ToValueText(const v1::Value& v);

// INVALID_ARGUMENT for an aggregate query no backend can run (no key, interval <= 0, end <=
// start).
absl::Status CheckAggregateQuery(const AggregateQuery& q);

}  // namespace strata::storage
