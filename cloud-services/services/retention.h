// Telemetry retention: a background thread that deletes telemetry older than the retention
// period, at start and then every `interval`, through TelemetryStore::DropTelemetryBefore
// (PostgreSQL drops whole day partitions, SQLite deletes rows). Counted and logged.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <absl/status/status.h>

#include <strata/clock.h>
#include <strata/metrics.h>

#include "storage/store.h"

namespace strata::services {

struct RetentionOptions {
  std::chrono::hours period{0};  // keep telemetry this long; 0 keeps everything (no thread)
  std::chrono::milliseconds interval{std::chrono::hours(1)};
};

class Retention {
 public:
  Retention(storage::Database& db, MetricsRegistry& metrics, Clock clock, RetentionOptions options);
  ~Retention();  // stops and joins
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  // One pass now, on the caller's thread (the background thread runs the same).
  absl::Status RunOnce();

 private:
  void Loop();

  storage::Database& db_;
  Clock clock_;
  RetentionOptions options_;
  Counter& partitions_dropped_;
  Counter& rows_deleted_;
  Counter& failures_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace strata::services
