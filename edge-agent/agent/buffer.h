// The edge's durable store-and-forward buffer: every accepted reading is appended here, with
// a per-edge sequence number, before anything else happens to it; the uplink reads from it
// and deletes what the cloud has acknowledged.
//
// SQLite in WAL mode. Appends are group commits: the pipeline hands over everything it
// decoded since the last commit, and it becomes durable in one transaction. Bounded by bytes
// and by age; when full, the configured policy drops the oldest readings or refuses new
// ones, and every dropped reading is counted.
//
// Thread-safe: one connection, guarded by mu_. The pipeline thread appends, the uplink
// thread reads and acknowledges.
#pragma once

#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/sqlite/sqlite.h>

#include "agent/decoder.h"
#include "strata/v1/edgesync.pb.h"

namespace strata::edge {

enum class FullPolicy { kDropOldest, kRefuseNew };

struct BufferOptions {
  std::string path;
  std::uint64_t max_bytes = 256ull * 1024 * 1024;
  std::int64_t max_age_ms = 7ll * 24 * 3600 * 1000;
  FullPolicy policy = FullPolicy::kDropOldest;
  // synchronous=FULL: a commit survives power loss, not only a crash of the process.
  bool sync_full = true;
};

struct AppendResult {
  std::size_t appended = 0;
  std::size_t refused = 0;       // kRefuseNew and the buffer was full
  std::size_t dropped_oldest = 0;
};

class Buffer {
 public:
  static absl::StatusOr<std::unique_ptr<Buffer>> Open(const BufferOptions& options, MetricsRegistry& metrics,
                                                      Clock clock);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // The bounds and the policy, changed while running (a config revision's settings); they
  // apply from the next append and age check.
  void SetLimits(std::uint64_t max_bytes, std::int64_t max_age_ms, FullPolicy policy);
  struct Limits {
    std::uint64_t max_bytes;
    std::int64_t max_age_ms;
    FullPolicy policy;
  };
  Limits GetLimits() const;

  // What else is written in a buffer transaction, on its connection (the edge rules keep
  // their state and alarms in the buffer's file, so that they commit with the readings):
  // given the buffer's last seq once the transaction's readings are in.
  using SideWrite = std::function<absl::Status(sqlite::Connection& db, std::uint64_t last_seq)>;

  // Appends in one transaction, assigning consecutive sequence numbers; `side` (if set) is
  // written in the same transaction.
  absl::StatusOr<AppendResult> Append(const std::vector<EdgeItem>& items, const SideWrite* side = nullptr);
  // Runs `write` in a transaction of its own.
  absl::Status Transact(const SideWrite& write);

  // Readings above `seq` are kept after the cloud acknowledged them, until the hold moves
  // past them (the edge rules replay them after a crash: their saved state covers readings
  // up to `seq`). No hold (the default): acknowledged readings go at once.
  absl::Status SetHold(std::uint64_t seq);

  // Up to `max` readings with seq > after, in seq order.
  absl::StatusOr<std::vector<v1::EdgeReading>> ReadAfter(std::uint64_t after, std::size_t max);

  // Deletes everything with seq <= `seq` (acknowledged by the cloud); returns how many.
  absl::StatusOr<std::size_t> AckUpTo(std::uint64_t seq);

  // Deletes readings older than max_age; returns how many (counted as dropped).
  absl::StatusOr<std::size_t> EnforceAge();

  // The cloud's mark is above anything this buffer ever numbered: the buffer was lost or the
  // edge id reused. Renumbers pending readings (and the sequence) to start above `mark`, so
  // they are not mistaken for data the cloud already has.
  absl::Status RebaseAbove(std::uint64_t mark);

  // Blocks until a reading with seq > after exists, the timeout passes or Interrupt() is
  // called.
  void WaitForData(std::uint64_t after, std::chrono::milliseconds timeout);
  // Ends the current (or the next) WaitForData early: the waiter has other work (a command
  // report to send).
  void Interrupt();

  std::uint64_t LastSeq() const;
  std::uint64_t Count() const;
  std::uint64_t Bytes() const;
  // Age of the oldest buffered reading (by when it was received), 0 if empty.
  double OldestAgeSeconds() const;

 private:
  Buffer(std::unique_ptr<sqlite::Connection> db, sqlite::Statement insert, sqlite::Statement read,
         BufferOptions options, MetricsRegistry& metrics, Clock clock);
  absl::Status LoadState();
  absl::Status AppendLocked(const std::vector<std::string>& blobs, std::uint64_t incoming, std::int64_t now,
                            const SideWrite* side, AppendResult& result);
  absl::StatusOr<std::size_t> DropOldestLocked(std::uint64_t need_bytes);
  // Runs a `DELETE ... WHERE <column> <op> ?1 RETURNING LENGTH(data)` and updates the counts.
  absl::StatusOr<std::size_t> DeleteLocked(std::string_view sql, std::int64_t bound);
  absl::Status RefreshOldestLocked();

  mutable std::mutex mu_;
  // Guarded by mu_: the connection, its statements and the counts of what is committed.
  std::unique_ptr<sqlite::Connection> db_;
  sqlite::Statement insert_;
  sqlite::Statement read_;
  BufferOptions options_;
  Clock clock_;
  std::condition_variable data_cv_;
  bool interrupted_ = false;  // guarded by mu_
  std::uint64_t last_seq_ = 0;
  std::uint64_t acked_ = 0;                 // the cloud's acknowledgements reached here
  std::uint64_t hold_ = UINT64_MAX;         // SetHold
  std::uint64_t count_ = 0;
  std::uint64_t bytes_ = 0;
  std::int64_t oldest_received_ = 0;

  Counter& buffered_total_;
  Counter& dropped_full_;
  Counter& dropped_refused_;
  Counter& dropped_age_;
};

}  // namespace strata::edge
