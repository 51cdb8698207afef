// Rows to protos, written once for both backends: the column order of the device, edge and
// reading SELECTs is the same in both (see each backend's SQL constants), and each backend
// hands its row through a small adapter with the accessors below.
//
//   Row: bool IsNull(int) const; std::string Text(int) const; std::int64_t Int(int) const;
//        double Double(int) const; bool Bool(int) const;
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <absl/status/statusor.h>

#include "storage/codec.h"
#include "strata/v1/common.pb.h"
#include "strata/v1/registry.pb.h"
#include "strata/v1/telemetry.pb.h"

namespace strata::storage {

// The value columns (v_double, v_int, v_bool, v_string) starting at `first`; the one that is
// not NULL holds the value.
template <typename Row>
v1::Value ValueFromRow(const Row& row, int first) {
  v1::Value v;
  if (!row.IsNull(first)) v.set_double_value(row.Double(first));
  else if (!row.IsNull(first + 1)) v.set_int_value(row.Int(first + 1));
  else if (!row.IsNull(first + 2)) v.set_bool_value(row.Bool(first + 2));
  else if (!row.IsNull(first + 3)) v.set_string_value(row.Text(first + 3));
  return v;
}

// key, ts, then the value columns.
template <typename Row>
v1::Reading ReadingFromRow(const Row& row, std::string_view device_id) {
  v1::Reading r;
  r.set_device_id(std::string(device_id));
  r.set_key(row.Text(0));
  r.set_ts(row.Int(1));
  *r.mutable_value() = ValueFromRow(row, 2);
  return r;
}

// device_id, name, type, labels, attributes, edge_id, created_at, updated_at, last_seen_at.
template <typename Row>
absl::StatusOr<v1::Device> DeviceFromRow(const Row& row, std::string_view tenant) {
  v1::Device d;
  d.set_device_id(row.Text(0));
  d.set_tenant_id(std::string(tenant));
  d.set_name(row.Text(1));
  d.set_type(row.Text(2));
  if (auto s = DecodeStringMap(row.Text(3), d.mutable_labels()); !s.ok()) return s;
  if (auto s = DecodeStringMap(row.Text(4), d.mutable_attributes()); !s.ok()) return s;
  d.set_edge_id(row.Text(5));
  d.set_created_at(row.Int(6));
  d.set_updated_at(row.Int(7));
  d.set_last_seen_at(row.Int(8));
  return d;
}

// edge_id, name, labels, created_at, updated_at, last_seen_at, high_water_mark, config
// revision, applied revision, applied_at, config_error, connected (the session's stream is
// open), pending_readings, oldest_pending_age_ms, settings (proto JSON).
template <typename Row>
absl::StatusOr<v1::Edge> EdgeFromRow(const Row& row, std::string_view tenant) {
  v1::Edge e;
  e.set_edge_id(row.Text(0));
  e.set_tenant_id(std::string(tenant));
  e.set_name(row.Text(1));
  if (auto s = DecodeStringMap(row.Text(2), e.mutable_labels()); !s.ok()) return s;
  e.set_created_at(row.Int(3));
  e.set_updated_at(row.Int(4));
  e.set_last_seen_at(row.Int(5));
  e.set_high_water_mark(static_cast<std::uint64_t>(row.Int(6)));
  e.set_config_revision(static_cast<std::uint64_t>(row.Int(7)));
  e.set_applied_revision(static_cast<std::uint64_t>(row.Int(8)));
  e.set_applied_at(row.Int(9));
  e.set_config_error(row.Text(10));
  e.set_connected(row.Int(11) != 0);
  e.set_pending_readings(static_cast<std::uint64_t>(row.Int(12)));
  e.set_oldest_pending_age_ms(row.Int(13));
  if (auto s = DecodeEdgeSettings(row.Text(14), e.mutable_settings()); !s.ok()) return s;
  return e;
}

// One row of sql::kSelectEdgeConfig: config_revision, then device_id, type, attributes,
// desired, desired_version (NULL for an edge without devices), then the edge's settings.
template <typename Row>
absl::Status AddEdgeConfigRow(const Row& row, v1::EdgeConfig& config) {
  config.set_revision(static_cast<std::uint64_t>(row.Int(0)));
  if (!config.has_settings()) {
    if (auto s = DecodeEdgeSettings(row.Text(6), config.mutable_settings()); !s.ok()) return s;
  }
  if (row.IsNull(1)) return absl::OkStatus();
  auto* d = config.add_devices();
  d->set_device_id(row.Text(1));
  d->set_type(row.Text(2));
  d->set_desired_json(row.Text(4));
  d->set_desired_version(row.Int(5));
  return DecodeStringMap(row.Text(3), d->mutable_attributes());
}

// One aggregate bucket: the columns key, bucket, avg, min, max, sum, count (both backends'
// aggregate statements return them in this order); the value is the one `function` asks for.
template <typename Row>
v1::Bucket BucketFromRow(const Row& row, v1::AggregationFunction function) {
  v1::Bucket b;
  b.set_ts(row.Int(1));
  b.set_count(row.Int(6));
  switch (function) {
    case v1::AGGREGATION_FUNCTION_MIN: b.set_value(row.Double(3)); break;
    case v1::AGGREGATION_FUNCTION_MAX: b.set_value(row.Double(4)); break;
    case v1::AGGREGATION_FUNCTION_SUM: b.set_value(row.Double(5)); break;
    case v1::AGGREGATION_FUNCTION_COUNT: b.set_value(static_cast<double>(b.count())); break;
    default: b.set_value(row.Double(2)); break;  // AVG, and UNSPECIFIED as AVG
  }
  return b;
}

// What Create* returns: the input with the stored, output-only fields.
v1::Device CreatedDevice(const v1::Device& input, std::string_view tenant, std::int64_t now_ms);
v1::Edge CreatedEdge(const v1::Edge& input, std::string_view tenant, std::int64_t now_ms);

// The rows a list query asks for: one more than the page (0 means 100), so that the caller
// knows whether another page follows.
std::int64_t PageLimit(int page_size);

}  // namespace strata::storage
