#include "services/retention.h"

#include <spdlog/spdlog.h>

namespace strata::services {

Retention::Retention(storage::Database& db, MetricsRegistry& metrics, Clock clock, RetentionOptions options)
    : db_(db),
      clock_(std::move(clock)),
      options_(options),
      partitions_dropped_(metrics.GetCounter("strata_cloud_retention_partitions_dropped_total",
                                             "Telemetry day partitions dropped by retention (PostgreSQL)")),
      rows_deleted_(metrics.GetCounter("strata_cloud_retention_rows_deleted_total",
                                       "Telemetry rows deleted by retention (SQLite)")),
      failures_(metrics.GetCounter("strata_cloud_retention_failures_total", "Retention passes that failed")) {
  if (options_.period.count() > 0) thread_ = std::thread([this] { Loop(); });
}

Retention::~Retention() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Retention::RunOnce() {
  const std::int64_t cutoff =
      clock_() - std::chrono::duration_cast<std::chrono::milliseconds>(options_.period).count();
  auto result = db_.Telemetry().DropTelemetryBefore(cutoff);
  if (!result.ok()) {
    failures_.Inc();
    spdlog::warn("retention: pass failed: {}", result.status().ToString());
    return result.status();
  }
  partitions_dropped_.Inc(result->partitions_dropped);
  rows_deleted_.Inc(result->rows_deleted);
  if (result->partitions_dropped > 0 || result->rows_deleted > 0) {
    spdlog::info("retention: telemetry before {} ms deleted ({} partitions dropped, {} rows deleted)", cutoff,
                 result->partitions_dropped, result->rows_deleted);
  }
  return absl::OkStatus();
}

void Retention::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    RunOnce().IgnoreError();  // counted and logged; the next pass tries again
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stopping_; });
  }
}

}  // namespace strata::services
