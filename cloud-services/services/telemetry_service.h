// strata.v1.Telemetry: validates requests, converts REST-friendly points into typed values and
// maps the calls onto the telemetry store.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <strata/clock.h>
#include <strata/metrics.h>

#include "services/request_context.h"
#include "storage/store.h"
#include "strata/v1/telemetry.grpc.pb.h"

namespace strata::services {

inline constexpr int kMaxPointsPerWrite = 10000;
// One write may touch at most this many UTC days: each is a PostgreSQL partition, and a write
// of points a day apart once created thousands of them (and slowed every later query).
inline constexpr std::size_t kMaxDaysPerWrite = 32;
inline constexpr std::int64_t kDayMs = 86'400'000;
inline constexpr int kDefaultQueryLimit = 1000;
inline constexpr int kMaxQueryLimit = 10000;
inline constexpr int kMaxKeysPerRequest = 100;

// Called with what a Write stored, once it is committed (the cloud rules; must not block).
using WrittenHook =
    std::function<void(const std::string& tenant, const std::string& device_id, const std::vector<storage::Point>&)>;

class TelemetryService final : public v1::Telemetry::Service {
 public:
  TelemetryService(storage::Database& db, MetricsRegistry& metrics, Clock clock, WrittenHook on_written = nullptr);

  grpc::Status Write(grpc::ServerContext*, const v1::WriteTelemetryRequest*, v1::WriteTelemetryResponse*) override;
  grpc::Status Query(grpc::ServerContext*, const v1::QueryTelemetryRequest*, v1::QueryTelemetryResponse*) override;
  grpc::Status Latest(grpc::ServerContext*, const v1::LatestTelemetryRequest*, v1::LatestTelemetryResponse*) override;
  grpc::Status Aggregate(grpc::ServerContext*, const v1::AggregateTelemetryRequest*,
                         v1::AggregateTelemetryResponse*) override;

 private:
  // NOT_FOUND unless the device exists (reads fail the same way writes do).
  absl::Status CheckDevice(const RequestContext& caller, const std::string& device_id);

  storage::Database& db_;
  Clock clock_;
  WrittenHook on_written_;
  Counter& points_written_;
  Counter& writes_rejected_;
};

// The deprecated TelemetryPoint.json_values form as a typed value: a google.protobuf.Value
// number is a double, so it stays one. `field` names the value in the error.
absl::StatusOr<v1::Value> FromJsonValue(const google::protobuf::Value& v, const std::string& field);

}  // namespace strata::services
