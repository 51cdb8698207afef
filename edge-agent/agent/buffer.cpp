#include "agent/buffer.h"

#include <filesystem>

#include <spdlog/spdlog.h>
#include <strata/sqlite/migrations.h>
#include <strata/status_macros.h>

namespace strata::edge {
namespace {

// The buffer's schema, one migration per version (strata::sqlite::Migrate records them in
// schema_migrations). Version 1 is the schema buffers had before migrations were recorded:
// its statements are idempotent, so such a buffer opens, keeps its readings and is recorded
// at version 1.
constexpr std::string_view kCreateBuffer = R"sql(
CREATE TABLE IF NOT EXISTS buffer_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO buffer_meta (key, value) VALUES ('last_seq', 0);
-- One row per reading. `data` is a serialized strata.v1.EdgeReading without its seq.
CREATE TABLE IF NOT EXISTS readings (
  seq         INTEGER PRIMARY KEY,
  received_at INTEGER NOT NULL,
  data        BLOB NOT NULL
);
)sql";
// The edge rules' tables (edge_rules.h), in the buffer's file so that they commit with the
// readings: each rule's state as of the readings up to rules_seq, and the alarm transitions
// they made, numbered (seq) for the uplink. A transition made again by readings replayed
// after a crash is the same row (alarm_outbox_once), so it is sent once; an acknowledged one
// stays while replayed readings could make it again (reading_seq above rules_seq).
constexpr std::string_view kCreateRules = R"sql(
INSERT OR IGNORE INTO buffer_meta (key, value) VALUES ('rules_seq', 0);
CREATE TABLE rule_state (
  rule_id    TEXT PRIMARY KEY,
  updated_at INTEGER NOT NULL,
  state      TEXT NOT NULL
);
CREATE TABLE alarm_outbox (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  rule_id         TEXT NOT NULL,
  rule_updated_at INTEGER NOT NULL,
  device_id       TEXT NOT NULL,
  kind            TEXT NOT NULL,
  severity        INTEGER NOT NULL,
  ts              INTEGER NOT NULL,
  reading_seq     INTEGER NOT NULL,
  acked           INTEGER NOT NULL DEFAULT 0,
  data            BLOB NOT NULL
);
CREATE UNIQUE INDEX alarm_outbox_once ON alarm_outbox (rule_id, rule_updated_at, device_id, kind, severity, ts);
)sql";
constexpr Migration kMigrations[] = {{1, "readings", kCreateBuffer}, {2, "rules", kCreateRules}};

constexpr std::string_view kInsertReading = "INSERT INTO readings (seq, received_at, data) VALUES (?1, ?2, ?3)";
constexpr std::string_view kReadAfter = "SELECT seq, data FROM readings WHERE seq > ?1 ORDER BY seq LIMIT ?2";
constexpr std::string_view kSaveLastSeq = "UPDATE buffer_meta SET value = ?1 WHERE key = 'last_seq'";
constexpr std::string_view kLoadState =
    "SELECT (SELECT value FROM buffer_meta WHERE key = 'last_seq'), COUNT(*), COALESCE(SUM(LENGTH(data)), 0), "
    "COALESCE(MIN(received_at), 0), COALESCE(MAX(seq), 0) FROM readings";
// The first reading in arrival (seq) order: one step down the primary key. (MIN(received_at)
// would scan the whole buffer, and this runs after every ack.)
constexpr std::string_view kOldestReceived =
    "SELECT COALESCE((SELECT received_at FROM readings ORDER BY seq LIMIT 1), 0)";
constexpr std::string_view kDeleteUpTo = "DELETE FROM readings WHERE seq <= ?1 RETURNING LENGTH(data)";
constexpr std::string_view kOldestRows = "SELECT seq, LENGTH(data) FROM readings ORDER BY seq LIMIT ?1";
constexpr std::string_view kDeleteThrough = "DELETE FROM readings WHERE seq <= ?1";
constexpr std::string_view kDeleteOlderThan = "DELETE FROM readings WHERE received_at < ?1 RETURNING LENGTH(data)";
constexpr std::string_view kShiftSeqs = "UPDATE readings SET seq = seq + ?1";

std::int64_t AsInt64(std::uint64_t v) { return static_cast<std::int64_t>(v); }

}  // namespace

absl::StatusOr<std::unique_ptr<Buffer>> Buffer::Open(const BufferOptions& options, MetricsRegistry& metrics,
                                                     Clock clock) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.path).parent_path(), ec);
  auto db = sqlite::Connection::Open(
      {.path = options.path, .synchronous = options.sync_full ? sqlite::Synchronous::kFull : sqlite::Synchronous::kNormal});
  if (!db.ok()) return absl::UnavailableError("cannot open the buffer: " + std::string(db.status().message()));
  STRATA_RETURN_IF_ERROR(sqlite::Migrate(**db, kMigrations, clock(), "edge buffer"));
  STRATA_ASSIGN_OR_RETURN(auto insert, (*db)->Prepare(kInsertReading));
  STRATA_ASSIGN_OR_RETURN(auto read, (*db)->Prepare(kReadAfter));
  std::unique_ptr<Buffer> buffer(
      new Buffer(*std::move(db), std::move(insert), std::move(read), options, metrics, std::move(clock)));
  STRATA_RETURN_IF_ERROR(buffer->LoadState());
  spdlog::info("buffer {}: {} readings ({} bytes) pending, last seq {}", options.path, buffer->count_,
               buffer->bytes_, buffer->last_seq_);
  return buffer;
}

Buffer::Buffer(std::unique_ptr<sqlite::Connection> db, sqlite::Statement insert, sqlite::Statement read,
               BufferOptions options, MetricsRegistry& metrics, Clock clock)
    : db_(std::move(db)),
      insert_(std::move(insert)),
      read_(std::move(read)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      buffered_total_(metrics.GetCounter("strata_edge_readings_buffered_total", "Readings committed to the buffer")),
      dropped_full_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                       {{"reason", "buffer_full_oldest"}})),
      dropped_refused_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                          {{"reason", "buffer_full_refused"}})),
      dropped_age_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                      {{"reason", "max_age"}})) {}

Buffer::~Buffer() = default;

absl::Status Buffer::LoadState() {
  STRATA_ASSIGN_OR_RETURN(auto st, db_->Prepare(kLoadState));
  STRATA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::InternalError("load buffer state: no row");
  const auto saved_last = static_cast<std::uint64_t>(st.Int(0));
  count_ = static_cast<std::uint64_t>(st.Int(1));
  bytes_ = static_cast<std::uint64_t>(st.Int(2));
  oldest_received_ = st.Int(3);
  last_seq_ = std::max(saved_last, static_cast<std::uint64_t>(st.Int(4)));
  return absl::OkStatus();
}

absl::Status Buffer::RefreshOldestLocked() {
  STRATA_ASSIGN_OR_RETURN(auto oldest, db_->Prepare(kOldestReceived));
  STRATA_ASSIGN_OR_RETURN(bool row, oldest.Step());
  if (row) oldest_received_ = oldest.Int(0);
  return absl::OkStatus();
}

absl::StatusOr<std::size_t> Buffer::DropOldestLocked(std::uint64_t need_bytes) {
  // Frees at least `need_bytes` by deleting the oldest readings, a chunk at a time.
  std::size_t dropped = 0;
  while (bytes_ + need_bytes > options_.max_bytes && count_ > 0) {
    STRATA_ASSIGN_OR_RETURN(auto pick, db_->Prepare(kOldestRows));
    pick.Bind(1, 1024);
    std::uint64_t upto = 0, freed = 0, n = 0;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, pick.Step());
      if (!row) break;
      upto = static_cast<std::uint64_t>(pick.Int(0));
      freed += static_cast<std::uint64_t>(pick.Int(1));
      ++n;
      if (bytes_ - freed + need_bytes <= options_.max_bytes) break;
    }
    if (n == 0) break;
    STRATA_ASSIGN_OR_RETURN(auto del, db_->Prepare(kDeleteThrough));
    STRATA_RETURN_IF_ERROR(del.Bind(1, AsInt64(upto)).Run());
    bytes_ -= freed;
    count_ -= n;
    dropped += n;
  }
  return dropped;
}

absl::StatusOr<AppendResult> Buffer::Append(const std::vector<EdgeItem>& items, const SideWrite* side) {
  AppendResult result;
  if (items.empty() && side == nullptr) return result;
  const std::int64_t now = clock_();
  std::vector<std::string> blobs;
  blobs.reserve(items.size());
  std::uint64_t incoming = 0;
  v1::EdgeReading r;
  for (const auto& item : items) {
    r.set_device_id(item.device_id);
    r.set_key(item.key);
    r.set_ts(item.ts);
    *r.mutable_value() = item.value;
    blobs.push_back(r.SerializeAsString());
    incoming += blobs.back().size();
  }

  std::lock_guard lock(mu_);
  // The counts describe what is committed: on any failure the transaction rolls back and
  // they are read again from the file.
  auto status = AppendLocked(blobs, incoming, now, side, result);
  if (!status.ok()) {
    if (auto reload = LoadState(); !reload.ok()) spdlog::error("buffer: cannot reload its state: {}", reload.ToString());
    return status;
  }
  buffered_total_.Inc(result.appended);
  dropped_full_.Inc(result.dropped_oldest);
  dropped_refused_.Inc(result.refused);
  data_cv_.notify_all();
  return result;
}

absl::Status Buffer::AppendLocked(const std::vector<std::string>& blobs, std::uint64_t incoming, std::int64_t now,
                                  const SideWrite* side, AppendResult& result) {
  STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
  std::size_t take = blobs.size();
  if (bytes_ + incoming > options_.max_bytes) {
    if (options_.policy == FullPolicy::kDropOldest) {
      STRATA_ASSIGN_OR_RETURN(result.dropped_oldest, DropOldestLocked(incoming));
    } else {
      // Refuse what does not fit, keep what does (in arrival order).
      std::uint64_t room = options_.max_bytes > bytes_ ? options_.max_bytes - bytes_ : 0;
      take = 0;
      for (const auto& b : blobs) {
        if (b.size() > room) break;
        room -= b.size();
        ++take;
      }
      result.refused = blobs.size() - take;
    }
  }
  std::uint64_t seq = last_seq_;
  std::uint64_t added_bytes = 0;
  for (std::size_t i = 0; i < take; ++i) {
    insert_.Reset();
    STRATA_RETURN_IF_ERROR(insert_.Bind(1, AsInt64(++seq)).Bind(2, now).BindBlob(3, blobs[i]).Run());
    added_bytes += blobs[i].size();
  }
  insert_.Reset();
  STRATA_ASSIGN_OR_RETURN(auto save, db_->Prepare(kSaveLastSeq));
  STRATA_RETURN_IF_ERROR(save.Bind(1, AsInt64(seq)).Run());
  if (side != nullptr && *side) STRATA_RETURN_IF_ERROR((*side)(*db_, seq));
  STRATA_RETURN_IF_ERROR(tx.Commit());
  if (count_ == 0 && take > 0) oldest_received_ = now;
  last_seq_ = seq;
  count_ += take;
  bytes_ += added_bytes;
  if (result.dropped_oldest > 0) STRATA_RETURN_IF_ERROR(RefreshOldestLocked());
  result.appended = take;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::EdgeReading>> Buffer::ReadAfter(std::uint64_t after, std::size_t max) {
  std::vector<v1::EdgeReading> out;
  std::lock_guard lock(mu_);
  read_.Reset();
  read_.Bind(1, AsInt64(after)).Bind(2, AsInt64(max));
  while (true) {
    auto row = read_.Step();
    if (!row.ok()) {
      read_.Reset();
      return row.status();
    }
    if (!*row) break;
    v1::EdgeReading r;
    if (!r.ParseFromString(read_.Blob(1))) {
      const auto seq = read_.Int(0);
      read_.Reset();
      return absl::DataLossError("buffer row " + std::to_string(seq) + " is corrupt");
    }
    r.set_seq(static_cast<std::uint64_t>(read_.Int(0)));
    out.push_back(std::move(r));
  }
  read_.Reset();
  return out;
}

absl::StatusOr<std::size_t> Buffer::DeleteLocked(std::string_view sql, std::int64_t bound) {
  STRATA_ASSIGN_OR_RETURN(auto del, db_->Prepare(sql));
  del.Bind(1, bound);
  std::size_t n = 0;
  std::uint64_t freed = 0;
  while (true) {
    STRATA_ASSIGN_OR_RETURN(bool row, del.Step());
    if (!row) break;
    ++n;
    freed += static_cast<std::uint64_t>(del.Int(0));
  }
  count_ -= std::min<std::uint64_t>(count_, n);
  bytes_ -= std::min(bytes_, freed);
  if (n > 0) STRATA_RETURN_IF_ERROR(RefreshOldestLocked());
  return n;
}

absl::StatusOr<std::size_t> Buffer::AckUpTo(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  acked_ = std::max(acked_, seq);
  return DeleteLocked(kDeleteUpTo, AsInt64(std::min(acked_, hold_)));
}

absl::Status Buffer::SetHold(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  hold_ = seq;
  return DeleteLocked(kDeleteUpTo, AsInt64(std::min(acked_, hold_))).status();
}

absl::Status Buffer::Transact(const SideWrite& write) {
  std::lock_guard lock(mu_);
  STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
  STRATA_RETURN_IF_ERROR(write(*db_, last_seq_));
  return tx.Commit();
}

absl::StatusOr<std::size_t> Buffer::EnforceAge() {
  std::lock_guard lock(mu_);
  const std::int64_t cutoff = clock_() - options_.max_age_ms;
  if (count_ == 0 || oldest_received_ >= cutoff) return 0;
  auto n = DeleteLocked(kDeleteOlderThan, cutoff);
  if (n.ok()) dropped_age_.Inc(*n);
  return n;
}

absl::Status Buffer::RebaseAbove(std::uint64_t mark) {
  std::lock_guard lock(mu_);
  if (mark <= last_seq_) return absl::OkStatus();
  if (mark > static_cast<std::uint64_t>(INT64_MAX) - last_seq_) {
    return absl::OutOfRangeError("the mark " + std::to_string(mark) + " leaves no room for this buffer's seqs");
  }
  // Every pending seq is <= last_seq_ < mark, so adding `mark` cannot collide.
  {
    STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
    STRATA_ASSIGN_OR_RETURN(auto shift, db_->Prepare(kShiftSeqs));
    STRATA_RETURN_IF_ERROR(shift.Bind(1, AsInt64(mark)).Run());
    STRATA_ASSIGN_OR_RETURN(auto save, db_->Prepare(kSaveLastSeq));
    STRATA_RETURN_IF_ERROR(save.Bind(1, AsInt64(last_seq_ + mark)).Run());
    STRATA_RETURN_IF_ERROR(tx.Commit());
  }
  spdlog::warn("buffer: the cloud's mark {} is above this buffer's last seq {}; pending readings renumbered", mark,
               last_seq_);
  last_seq_ += mark;
  data_cv_.notify_all();
  return absl::OkStatus();
}

void Buffer::WaitForData(std::uint64_t after, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  data_cv_.wait_for(lock, timeout, [&] { return interrupted_ || (last_seq_ > after && count_ > 0); });
  interrupted_ = false;
}

void Buffer::Interrupt() {
  {
    std::lock_guard lock(mu_);
    interrupted_ = true;
  }
  data_cv_.notify_all();
}

std::uint64_t Buffer::LastSeq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

std::uint64_t Buffer::Count() const {
  std::lock_guard lock(mu_);
  return count_;
}

std::uint64_t Buffer::Bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

double Buffer::OldestAgeSeconds() const {
  std::lock_guard lock(mu_);
  if (count_ == 0) return 0;
  return static_cast<double>(clock_() - oldest_received_) / 1000.0;
}

void Buffer::SetLimits(std::uint64_t max_bytes, std::int64_t max_age_ms, FullPolicy policy) {
  std::lock_guard lock(mu_);
  if (max_bytes < bytes_) {
    spdlog::warn("buffer: its bound is now {} bytes, below the {} it holds: {}", max_bytes, bytes_,
                 policy == FullPolicy::kDropOldest ? "the oldest readings are dropped at the next append"
                                                   : "new readings are refused until acknowledgements make room");
  }
  options_.max_bytes = max_bytes;
  options_.max_age_ms = max_age_ms;
  options_.policy = policy;
}

Buffer::Limits Buffer::GetLimits() const {
  std::lock_guard lock(mu_);
  return {options_.max_bytes, options_.max_age_ms, options_.policy};
}

}  // namespace strata::edge
