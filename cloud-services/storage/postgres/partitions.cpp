#include "postgres/partitions.h"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_format.h>
#include <absl/strings/substitute.h>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "postgres/backend.h"

namespace strata::storage::postgres {
namespace {

constexpr std::string_view kListPartitions =
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'telemetry'::regclass";
// DDL takes no bind parameters: $0 is built from digits only, $1 and $2 are integers.
constexpr std::string_view kCreatePartition =
    "CREATE TABLE IF NOT EXISTS $0 PARTITION OF telemetry FOR VALUES FROM ($1) TO ($2)";
// A day whose rows are in the default partition: they move into the day's new partition in
// one transaction (writers and readers of the default wait for it: the ATTACH locks it).
// Serialises the moves of every process (a transaction-scoped advisory lock), then takes the
// tables in the order CREATE ... PARTITION OF and DETACH take them: parent, then default.
constexpr std::int64_t kPartitionMoveLockKey = 0x5374726174615032;  // "StrataP2"
constexpr std::string_view kLockPartitionMoves = "SELECT pg_advisory_xact_lock($1)";
constexpr std::string_view kPartitionExists = "SELECT to_regclass($1) IS NOT NULL";
constexpr std::string_view kLockParentForMove = "LOCK TABLE telemetry IN SHARE UPDATE EXCLUSIVE MODE";
constexpr std::string_view kLockDefaultPartition = "LOCK TABLE telemetry_default IN EXCLUSIVE MODE";
constexpr std::string_view kCreateDayTable =
    "CREATE TABLE $0 (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS)";
constexpr std::string_view kMoveFromDefault =
    "WITH moved AS (DELETE FROM telemetry_default WHERE ts >= $1 AND ts < $2"
    "   RETURNING tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string)"
    " INSERT INTO $0 (tenant_id, device_id, key, ts, v_double, v_int, v_bool, v_string) SELECT * FROM moved";
constexpr std::string_view kAttachPartition = "ALTER TABLE telemetry ATTACH PARTITION $0 FOR VALUES FROM ($1) TO ($2)";
// In chunks, each its own short statement, so writers of the default wait for one at most.
constexpr std::string_view kDeleteDefaultBefore =
    "DELETE FROM telemetry_default WHERE ctid IN (SELECT ctid FROM telemetry_default WHERE ts < $1 LIMIT $2)";
constexpr std::int64_t kDefaultDeleteChunk = 10000;
// Retention: one DROP of the partition (it leaves the parent with it: no half-done state if
// the process dies, as DETACH then DROP could leave). It locks telemetry for the catalog
// change; DETACH ... CONCURRENTLY is refused while a default partition exists.
constexpr std::string_view kDropTable = "DROP TABLE IF EXISTS $0";

// Partition names spell years 0001 to 9999; the telemetry model's ts range (1970 to 9999,
// checked before any SQL) lies inside.
std::string PartitionName(std::int64_t day) {
  using namespace std::chrono;
  const year_month_day ymd{sys_days{days{day}}};
  return absl::StrFormat("telemetry_p%04d%02d%02d", static_cast<int>(ymd.year()),
                         static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

// The day a partition named by PartitionName() holds; nullopt for other names.
std::optional<std::int64_t> DayOfPartition(std::string_view name) {
  constexpr std::string_view kPrefix = "telemetry_p";
  if (!absl::StartsWith(Str(name), Str(kPrefix)) || name.size() != kPrefix.size() + 8) return std::nullopt;
  int ymd = 0;
  if (!absl::SimpleAtoi(Str(name.substr(kPrefix.size())), &ymd)) return std::nullopt;
  using namespace std::chrono;
  const year_month_day date{year{ymd / 10000}, month{static_cast<unsigned>(ymd / 100 % 100)},
                            day{static_cast<unsigned>(ymd % 100)}};
  if (!date.ok()) return std::nullopt;
  return sys_days{date}.time_since_epoch().count();
}

}  // namespace

std::int64_t DayOf(std::int64_t ts) { return ts >= 0 ? ts / kDayMs : -((-ts + kDayMs - 1) / kDayMs); }

void Partitions::Prepare(pqxx::connection& c) {
  {
    pqxx::nontransaction tx(c);
    auto r = tx.exec(Str(kListPartitions));
    std::lock_guard lock(mu_);
    for (const auto& row : r) {
      if (auto day = DayOfPartition(row[0].as<std::string>())) known_days_.insert(*day);
    }
  }
  std::set<std::int64_t> days;
  const std::int64_t today = DayOf(clock_());
  for (int i = 0; i <= kDaysAhead; ++i) days.insert(today + i);
  Ensure(c, days);
}

std::vector<std::int64_t> Partitions::Missing(const std::set<std::int64_t>& days) {
  const std::int64_t today = DayOf(clock_());
  std::vector<std::int64_t> missing;
  std::lock_guard lock(mu_);
  for (auto d : days) {
    const bool in_window = d >= today - kDaysBehind && d <= today + kDaysAhead;
    if (in_window && !known_days_.contains(d)) missing.push_back(d);
  }
  return missing;
}

bool Partitions::HasMissing(const std::set<std::int64_t>& days) { return !Missing(days).empty(); }

void Partitions::Ensure(pqxx::connection& c, const std::set<std::int64_t>& days) {
  for (auto day : Missing(days)) {
    Create(c, day);
    std::lock_guard lock(mu_);
    known_days_.insert(day);
  }
}

void Partitions::Forget() {
  std::lock_guard lock(mu_);
  known_days_.clear();
}

RetentionResult Partitions::DropBefore(pqxx::connection& c, std::int64_t cutoff_ms) {
  // Whole days only: a partition goes when its last millisecond is before the cutoff.
  std::vector<std::pair<std::int64_t, std::string>> old;
  {
    pqxx::nontransaction tx(c);
    for (const auto& row : tx.exec(Str(kListPartitions))) {
      auto name = row[0].as<std::string>();
      if (auto day = DayOfPartition(name); day && (*day + 1) * kDayMs <= cutoff_ms) old.emplace_back(*day, name);
    }
  }
  RetentionResult result;
  for (const auto& [day, name] : old) {
    {
      std::lock_guard lock(mu_);
      known_days_.erase(day);
    }
    pqxx::nontransaction tx(c);
    tx.exec(absl::Substitute(Str(kDropTable), name));
    ++result.partitions_dropped;
  }
  for (;;) {
    pqxx::nontransaction tx(c);
    const auto n = tx.exec_params(Str(kDeleteDefaultBefore), cutoff_ms, kDefaultDeleteChunk).affected_rows();
    result.rows_deleted += n;
    if (static_cast<std::int64_t>(n) < kDefaultDeleteChunk) break;
  }
  return result;
}

void Partitions::Create(pqxx::connection& c, std::int64_t day) {
  const std::string sql = absl::Substitute(Str(kCreatePartition), PartitionName(day), day * kDayMs, (day + 1) * kDayMs);
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::nontransaction tx(c);
      tx.exec(sql);
      return;
    } catch (const pqxx::sql_error& e) {
      // Another session created it between our IF NOT EXISTS check and our insert into the
      // catalog (42P07, or 23505 on the catalog's unique index), or a partition with another
      // name already covers the range (42P17).
      const std::string& state = e.sqlstate();
      if (state == "42P07" || state == "23505" || state == "42P17") return;
      // 23514: the default partition holds rows of this day; they move in with it.
      if (state == "23514") {
        try {
          MoveOutOfDefault(c, day);
        } catch (const pqxx::sql_error& moved) {
          // A writer that does not take the move lock (CREATE ... PARTITION OF above) got
          // there first: the partition exists, which is all we wanted.
          if (moved.sqlstate() != "42P07" && moved.sqlstate() != "42P17") throw;
        }
        return;
      }
      throw;
    } catch (const pqxx::transaction_rollback& e) {
      if (attempt >= kMaxAttempts) throw;
      spdlog::warn("PostgreSQL: retrying partition creation: {}", e.what());
    }
  }
}

// Makes `day`'s partition from the rows the default partition holds for it, in one
// transaction: create the table, move the rows, attach it.
void Partitions::MoveOutOfDefault(pqxx::connection& c, std::int64_t day) {
  const std::string name = PartitionName(day);
  const std::int64_t lo = day * kDayMs, hi = (day + 1) * kDayMs;
  pqxx::work tx(c);
  tx.exec_params(Str(kLockPartitionMoves), kPartitionMoveLockKey);
  // Another process (or thread) may have made it while we waited for the lock.
  if (tx.exec_params(Str(kPartitionExists), name)[0][0].as<bool>()) return;
  tx.exec(Str(kLockParentForMove));
  tx.exec(Str(kLockDefaultPartition));
  tx.exec(absl::Substitute(Str(kCreateDayTable), name));
  const auto moved = tx.exec(absl::Substitute(Str(kMoveFromDefault), name, lo, hi)).affected_rows();
  tx.exec(absl::Substitute(Str(kAttachPartition), name, lo, hi));
  tx.commit();
  spdlog::info("PostgreSQL: made partition {}, with {} readings moved out of telemetry_default", name, moved);
}

}  // namespace strata::storage::postgres
