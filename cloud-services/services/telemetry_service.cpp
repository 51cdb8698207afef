#include "services/telemetry_service.h"


#include <set>

#include "services/grpc_status.h"
#include "services/request_context.h"
#include "services/page_token.h"
#include "strata/ids.h"
#include "strata/telemetry/model.h"

namespace strata::services {
namespace {


absl::Status ValidateKeys(const google::protobuf::RepeatedPtrField<std::string>& keys, bool required) {
  if (required && keys.empty()) return absl::InvalidArgumentError("keys: at least one key is required");
  if (keys.size() > kMaxKeysPerRequest) {
    return absl::InvalidArgumentError("keys: at most " + std::to_string(kMaxKeysPerRequest) + " keys per request");
  }
  for (const auto& k : keys) {
    if (auto s = ValidateKey(k); !s.ok()) return absl::InvalidArgumentError("keys: " + std::string(s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(std::int64_t start, std::int64_t end, bool end_required) {
  if (start < 0) return absl::InvalidArgumentError("start must not be negative");
  if (end < 0) return absl::InvalidArgumentError("end must not be negative");
  if (end_required && end == 0) return absl::InvalidArgumentError("end is required");
  if (end != 0 && end <= start) return absl::InvalidArgumentError("start must be before end");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Value> FromJsonValue(const google::protobuf::Value& v, const std::string& field) {
  v1::Value out;
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      out.set_double_value(v.number_value());
      break;
    case google::protobuf::Value::kBoolValue:
      out.set_bool_value(v.bool_value());
      break;
    case google::protobuf::Value::kStringValue:
      out.set_string_value(v.string_value());
      break;
    case google::protobuf::Value::kNullValue:
      return absl::InvalidArgumentError(field + ": null is not a telemetry value");
    case google::protobuf::Value::kListValue:
    case google::protobuf::Value::kStructValue:
      return absl::InvalidArgumentError(field + ": lists and objects are not telemetry values");
    default:
      return absl::InvalidArgumentError(field + ": value is not set");
  }
  if (auto verdict = telemetry::CheckValue(out); !verdict.ok()) return verdict.ToStatus(field);
  return out;
}

TelemetryService::TelemetryService(storage::Database& db, MetricsRegistry& metrics, Clock clock,
                                   WrittenHook on_written)
    : db_(db),
      clock_(std::move(clock)),
      on_written_(std::move(on_written)),
      points_written_(metrics.GetCounter("strata_cloud_api_points_written_total",
                                         "Telemetry values stored through the Telemetry.Write API")),
      writes_rejected_(metrics.GetCounter("strata_cloud_api_writes_rejected_total",
                                          "Telemetry.Write requests rejected as invalid")) {}

absl::Status TelemetryService::CheckDevice(const RequestContext& caller, const std::string& device_id) {
  if (auto s = ValidateId("device_id", device_id); !s.ok()) return s;
  return db_.Devices().GetDevice(caller.tenant, device_id).status();
}

grpc::Status TelemetryService::Write(grpc::ServerContext* context, const v1::WriteTelemetryRequest* req,
                                     v1::WriteTelemetryResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto reject = [&](absl::Status s) {
    writes_rejected_.Inc();
    return ToGrpc(s);
  };
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return reject(s);
  if (req->points().empty()) return reject(absl::InvalidArgumentError("points: at least one point is required"));
  if (req->points_size() > kMaxPointsPerWrite) {
    return reject(absl::InvalidArgumentError("points: at most " + std::to_string(kMaxPointsPerWrite) +
                                             " points per request"));
  }
  // json_values is deprecated for clients; the service still serves it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const std::int64_t now = clock_();
  std::vector<storage::Point> points;
  std::set<std::int64_t> days;  // PostgreSQL keeps a partition per UTC day
  for (int i = 0; i < req->points_size(); ++i) {
    const auto& p = req->points(i);
    const std::string where = "points[" + std::to_string(i) + "]";
    const std::int64_t ts = p.ts() == 0 ? now : p.ts();
    if (auto verdict = telemetry::CheckTimestamp(ts); !verdict.ok()) return reject(verdict.ToStatus(where + ".ts"));
    if (days.insert(ts / kDayMs).second && days.size() > kMaxDaysPerWrite) {
      return reject(absl::InvalidArgumentError(
          "points span more than " + std::to_string(kMaxDaysPerWrite) +
          " distinct UTC days; split the write (storage is partitioned by day)"));
    }
    if (p.values().empty() && p.json_values().empty()) {
      return reject(absl::InvalidArgumentError(where + ".values must not be empty"));
    }
    auto add = [&](const std::string& key, v1::Value value) -> absl::Status {
      const std::string field = where + ".values." + key;
      if (auto verdict = telemetry::CheckKey(key); !verdict.ok()) return verdict.ToStatus(where + ".values");
      if (auto verdict = telemetry::CheckValue(value); !verdict.ok()) return verdict.ToStatus(field);
      points.push_back(storage::Point{key, ts, std::move(value)});
      return absl::OkStatus();
    };
    for (const auto& [key, value] : p.values()) {
      if (auto s = add(key, value); !s.ok()) return reject(s);
    }
    for (const auto& [key, value] : p.json_values()) {
      auto typed = FromJsonValue(value, where + ".json_values." + key);
      if (!typed.ok()) return reject(typed.status());
      if (auto s = add(key, *std::move(typed)); !s.ok()) return reject(s);
    }
  }
#pragma GCC diagnostic pop
  if (auto s = db_.Telemetry().Write(caller->tenant, req->device_id(), points); !s.ok()) return reject(s);
  points_written_.Inc(points.size());
  if (on_written_) on_written_(caller->tenant, req->device_id(), points);
  out->set_written(static_cast<std::int64_t>(points.size()));
  return grpc::Status::OK;
}

grpc::Status TelemetryService::Query(grpc::ServerContext* context, const v1::QueryTelemetryRequest* req,
                                     v1::QueryTelemetryResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateKeys(req->keys(), false); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateRange(req->start(), req->end(), false); !s.ok()) return ToGrpc(s);
  if (req->limit() < 0 || req->limit() > kMaxQueryLimit) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "limit must be between 1 and " + std::to_string(kMaxQueryLimit) + " (0 for the default of " +
                            std::to_string(kDefaultQueryLimit) + ")");
  }
  if (!v1::SortOrder_IsValid(req->order())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "order must be SORT_ORDER_ASC or SORT_ORDER_DESC");
  }
  storage::TelemetryQuery q;
  q.device_id = req->device_id();
  q.keys.assign(req->keys().begin(), req->keys().end());
  q.start = req->start();
  q.end = req->end();
  q.limit = req->limit() == 0 ? kDefaultQueryLimit : req->limit();
  q.descending = req->order() == v1::SORT_ORDER_DESC;
  if (!req->page_token().empty()) {
    auto cursor = DecodeTelemetryToken(req->page_token());
    if (!cursor.ok()) return ToGrpc(cursor.status());
    q.after = *std::move(cursor);
  }
  if (auto s = CheckDevice(*caller, req->device_id()); !s.ok()) return ToGrpc(s);
  auto rows = db_.Telemetry().Query(caller->tenant, q);
  if (!rows.ok()) return ToGrpc(rows.status());
  if (static_cast<int>(rows->size()) > q.limit) {
    rows->resize(q.limit);
    out->set_next_page_token(EncodeTelemetryToken({rows->back().ts(), rows->back().key()}));
  }
  for (auto& r : *rows) *out->add_readings() = std::move(r);
  return grpc::Status::OK;
}

grpc::Status TelemetryService::Latest(grpc::ServerContext* context, const v1::LatestTelemetryRequest* req,
                                      v1::LatestTelemetryResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateKeys(req->keys(), false); !s.ok()) return ToGrpc(s);
  if (auto s = CheckDevice(*caller, req->device_id()); !s.ok()) return ToGrpc(s);
  auto rows = db_.Telemetry().Latest(caller->tenant, req->device_id(),
                                     std::vector<std::string>(req->keys().begin(), req->keys().end()));
  if (!rows.ok()) return ToGrpc(rows.status());
  for (auto& r : *rows) *out->add_readings() = std::move(r);
  return grpc::Status::OK;
}

grpc::Status TelemetryService::Aggregate(grpc::ServerContext* context, const v1::AggregateTelemetryRequest* req,
                                         v1::AggregateTelemetryResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateKeys(req->keys(), true); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateRange(req->start(), req->end(), true); !s.ok()) return ToGrpc(s);
  if (req->interval() <= 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "interval must be a positive number of milliseconds");
  }
  if (req->function() == v1::AGGREGATION_FUNCTION_UNSPECIFIED || !v1::AggregationFunction_IsValid(req->function())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "function must be one of AGGREGATION_FUNCTION_AVG, _MIN, _MAX, _SUM, _COUNT");
  }
  if (auto s = CheckDevice(*caller, req->device_id()); !s.ok()) return ToGrpc(s);
  storage::AggregateQuery q;
  q.device_id = req->device_id();
  q.keys.assign(req->keys().begin(), req->keys().end());
  q.start = req->start();
  q.end = req->end();
  q.interval = req->interval();
  q.function = req->function();
  auto series = db_.Telemetry().Aggregate(caller->tenant, q);
  if (!series.ok()) return ToGrpc(series.status());
  for (auto& s : *series) *out->add_series() = std::move(s);
  return grpc::Status::OK;
}

}  // namespace strata::services
