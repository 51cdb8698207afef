// PostgreSQL: the day partitions of telemetry.
//
// Day partitions exist for the days of the window [today - kDaysBehind, today + kDaysAhead]:
// made ahead for today and the days after it when the database opens, and for a day of the
// window when a write first touches it. Readings of other days go to telemetry_default
// (migration 0003), so no write makes more than the window's partitions. Partitions are made
// outside the write transaction (creating one locks the parent table, which must not be held
// for the length of a write), each in its own short statement.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <vector>

#include <pqxx/connection>

#include "storage/store.h"
#include "strata/clock.h"

namespace strata::storage::postgres {

inline constexpr std::int64_t kDayMs = 86'400'000;

// The UTC day of a ts (days since 1970-01-01, floored).
std::int64_t DayOf(std::int64_t ts);

class Partitions {
 public:
  static constexpr int kDaysAhead = 3;
  static constexpr int kDaysBehind = 7;

  explicit Partitions(Clock clock) : clock_(std::move(clock)) {}

  // Learns the partitions that exist and makes those of today and the days ahead.
  void Prepare(pqxx::connection& c);

  // Whether some day of `days` is in the window and has no partition yet, as far as this
  // process knows.
  bool HasMissing(const std::set<std::int64_t>& days);

  // Makes sure a partition exists for every day of the window in `days`. Throws libpqxx
  // exceptions (the caller's Run maps them).
  void Ensure(pqxx::connection& c, const std::set<std::int64_t>& days);

  // Forgets every partition it knew of (one was dropped under us: "no partition of relation
  // found for row"); the next writes find out again.
  void Forget();

  // Retention: drops the partitions whose last millisecond is before the cutoff, and deletes
  // the default partition's older rows in chunks.
  RetentionResult DropBefore(pqxx::connection& c, std::int64_t cutoff_ms);

 private:
  std::vector<std::int64_t> Missing(const std::set<std::int64_t>& days);
  static void Create(pqxx::connection& c, std::int64_t day);
  static void MoveOutOfDefault(pqxx::connection& c, std::int64_t day);

  const Clock clock_;
  std::mutex mu_;
  std::set<std::int64_t> known_days_;  // guarded by mu_: days with a partition
};

}  // namespace strata::storage::postgres
