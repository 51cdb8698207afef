#include "agent/buffer.h"

#include <filesystem>

#include <spdlog/spdlog.h>

namespace strata::edge {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS buffer_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO buffer_meta (key, value) VALUES ('schema_version', 1), ('last_seq', 0);
-- One row per reading. `data` is a serialized strata.v1.EdgeReading without its seq.
CREATE TABLE IF NOT EXISTS readings (
  seq         INTEGER PRIMARY KEY,
  received_at INTEGER NOT NULL,
  data        BLOB NOT NULL
);
)sql";

constexpr const char* kInsertReading = "INSERT INTO readings (seq, received_at, data) VALUES (?, ?, ?)";
constexpr const char* kReadAfter = "SELECT seq, data FROM readings WHERE seq > ? ORDER BY seq LIMIT ?";
constexpr const char* kSaveLastSeq = "UPDATE buffer_meta SET value = ? WHERE key = 'last_seq'";
constexpr const char* kLoadState =
    "SELECT (SELECT value FROM buffer_meta WHERE key = 'last_seq'), COUNT(*), COALESCE(SUM(LENGTH(data)), 0), "
    "COALESCE(MIN(received_at), 0), COALESCE(MAX(seq), 0) FROM readings";
// The first reading in arrival (seq) order: one step down the primary key. (MIN(received_at)
// would scan the whole buffer, and this runs after every ack.)
constexpr const char* kOldestReceived =
    "SELECT COALESCE((SELECT received_at FROM readings ORDER BY seq LIMIT 1), 0)";
constexpr const char* kDeleteUpTo = "DELETE FROM readings WHERE seq <= ? RETURNING LENGTH(data)";
constexpr const char* kOldestRows = "SELECT seq, LENGTH(data) FROM readings ORDER BY seq LIMIT ?";
constexpr const char* kDeleteOlderThan = "DELETE FROM readings WHERE received_at < ? RETURNING LENGTH(data)";

absl::Status SqliteError(sqlite3* db, const std::string& what) {
  return absl::InternalError(what + ": " + sqlite3_errmsg(db));
}

// Runs a prepared statement to completion; used for statements without result rows.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Buffer>> Buffer::Open(const BufferOptions& options, MetricsRegistry& metrics,
                                                     Clock clock) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.path).parent_path(), ec);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(options.path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    auto s = absl::UnavailableError("cannot open buffer " + options.path + ": " + sqlite3_errmsg(db));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Buffer> buffer(new Buffer(db, options, metrics, std::move(clock)));
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000"}) {
    if (auto s = buffer->Exec(pragma); !s.ok()) return s;
  }
  if (auto s = buffer->Exec(options.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"); !s.ok()) {
    return s;
  }
  if (auto s = buffer->Exec(kSchema); !s.ok()) return s;
  if (sqlite3_prepare_v2(db, kInsertReading, -1, &buffer->insert_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, kReadAfter, -1, &buffer->read_, nullptr) != SQLITE_OK) {
    return SqliteError(db, "prepare");
  }
  if (auto s = buffer->LoadState(); !s.ok()) return s;
  spdlog::info("buffer {}: {} readings ({} bytes) pending, last seq {}", options.path, buffer->count_,
               buffer->bytes_, buffer->last_seq_);
  return buffer;
}

Buffer::Buffer(sqlite3* db, BufferOptions options, MetricsRegistry& metrics, Clock clock)
    : db_(db),
      options_(std::move(options)),
      clock_(std::move(clock)),
      buffered_total_(metrics.GetCounter("strata_edge_readings_buffered_total", "Readings committed to the buffer")),
      dropped_full_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                       {{"reason", "buffer_full_oldest"}})),
      dropped_refused_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                          {{"reason", "buffer_full_refused"}})),
      dropped_age_(metrics.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer",
                                      {{"reason", "max_age"}})) {}

Buffer::~Buffer() {
  sqlite3_finalize(insert_);
  sqlite3_finalize(read_);
  sqlite3_close(db_);
}

absl::Status Buffer::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(std::string("buffer: ") + msg);
  }
  return absl::OkStatus();
}

absl::Status Buffer::LoadState() {
  Stmt st(db_, kLoadState);
  if (!st || sqlite3_step(st.get()) != SQLITE_ROW) return SqliteError(db_, "load buffer state");
  const auto saved_last = static_cast<std::uint64_t>(sqlite3_column_int64(st.get(), 0));
  count_ = static_cast<std::uint64_t>(sqlite3_column_int64(st.get(), 1));
  bytes_ = static_cast<std::uint64_t>(sqlite3_column_int64(st.get(), 2));
  oldest_received_ = sqlite3_column_int64(st.get(), 3);
  last_seq_ = std::max(saved_last, static_cast<std::uint64_t>(sqlite3_column_int64(st.get(), 4)));
  return absl::OkStatus();
}

std::size_t Buffer::DropOldestLocked(std::uint64_t need_bytes) {
  // Frees at least `need_bytes` by deleting the oldest readings, a chunk at a time.
  std::size_t dropped = 0;
  while (bytes_ + need_bytes > options_.max_bytes && count_ > 0) {
    Stmt pick(db_, kOldestRows);
    sqlite3_bind_int64(pick.get(), 1, 1024);
    std::uint64_t upto = 0, freed = 0, n = 0;
    while (sqlite3_step(pick.get()) == SQLITE_ROW) {
      upto = static_cast<std::uint64_t>(sqlite3_column_int64(pick.get(), 0));
      freed += static_cast<std::uint64_t>(sqlite3_column_int64(pick.get(), 1));
      ++n;
      if (bytes_ - freed + need_bytes <= options_.max_bytes) break;
    }
    if (n == 0) break;
    Stmt del(db_, "DELETE FROM readings WHERE seq <= ?");
    sqlite3_bind_int64(del.get(), 1, static_cast<sqlite3_int64>(upto));
    if (sqlite3_step(del.get()) != SQLITE_DONE) break;
    bytes_ -= freed;
    count_ -= n;
    dropped += n;
  }
  return dropped;
}

absl::StatusOr<AppendResult> Buffer::Append(const std::vector<EdgeItem>& items) {
  AppendResult result;
  if (items.empty()) return result;
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
  if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  std::size_t take = blobs.size();
  if (bytes_ + incoming > options_.max_bytes) {
    if (options_.policy == FullPolicy::kDropOldest) {
      result.dropped_oldest = DropOldestLocked(incoming);
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
    sqlite3_reset(insert_);
    sqlite3_bind_int64(insert_, 1, static_cast<sqlite3_int64>(++seq));
    sqlite3_bind_int64(insert_, 2, now);
    sqlite3_bind_blob(insert_, 3, blobs[i].data(), static_cast<int>(blobs[i].size()), SQLITE_STATIC);
    if (sqlite3_step(insert_) != SQLITE_DONE) {
      auto s = SqliteError(db_, "append");
      Exec("ROLLBACK").IgnoreError();
      LoadState().IgnoreError();
      return s;
    }
    added_bytes += blobs[i].size();
  }
  sqlite3_reset(insert_);
  {
    Stmt save(db_, kSaveLastSeq);
    sqlite3_bind_int64(save.get(), 1, static_cast<sqlite3_int64>(seq));
    sqlite3_step(save.get());
  }
  if (auto s = Exec("COMMIT"); !s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    LoadState().IgnoreError();
    return s;
  }
  if (count_ == 0 && take > 0) oldest_received_ = now;
  last_seq_ = seq;
  count_ += take;
  bytes_ += added_bytes;
  if (result.dropped_oldest > 0) {
    Stmt oldest(db_, kOldestReceived);
    if (sqlite3_step(oldest.get()) == SQLITE_ROW) oldest_received_ = sqlite3_column_int64(oldest.get(), 0);
  }
  result.appended = take;
  buffered_total_.Inc(take);
  dropped_full_.Inc(result.dropped_oldest);
  dropped_refused_.Inc(result.refused);
  data_cv_.notify_all();
  return result;
}

absl::StatusOr<std::vector<v1::EdgeReading>> Buffer::ReadAfter(std::uint64_t after, std::size_t max) {
  std::vector<v1::EdgeReading> out;
  std::lock_guard lock(mu_);
  sqlite3_reset(read_);
  sqlite3_bind_int64(read_, 1, static_cast<sqlite3_int64>(after));
  sqlite3_bind_int64(read_, 2, static_cast<sqlite3_int64>(max));
  int rc;
  while ((rc = sqlite3_step(read_)) == SQLITE_ROW) {
    v1::EdgeReading r;
    const void* data = sqlite3_column_blob(read_, 1);
    const int size = sqlite3_column_bytes(read_, 1);
    if (!r.ParseFromArray(data, size)) {
      sqlite3_reset(read_);
      return absl::DataLossError("buffer row " + std::to_string(sqlite3_column_int64(read_, 0)) + " is corrupt");
    }
    r.set_seq(static_cast<std::uint64_t>(sqlite3_column_int64(read_, 0)));
    out.push_back(std::move(r));
  }
  sqlite3_reset(read_);
  if (rc != SQLITE_DONE) return SqliteError(db_, "read buffer");
  return out;
}

absl::StatusOr<std::size_t> Buffer::DeleteLocked(const char* sql, std::int64_t bound, const char* what) {
  Stmt del(db_, sql);
  sqlite3_bind_int64(del.get(), 1, bound);
  std::size_t n = 0;
  std::uint64_t freed = 0;
  int rc;
  while ((rc = sqlite3_step(del.get())) == SQLITE_ROW) {
    ++n;
    freed += static_cast<std::uint64_t>(sqlite3_column_int64(del.get(), 0));
  }
  if (rc != SQLITE_DONE) return SqliteError(db_, what);
  count_ -= std::min<std::uint64_t>(count_, n);
  bytes_ -= std::min(bytes_, freed);
  if (n > 0) {
    Stmt oldest(db_, kOldestReceived);
    if (sqlite3_step(oldest.get()) == SQLITE_ROW) oldest_received_ = sqlite3_column_int64(oldest.get(), 0);
  }
  return n;
}

absl::StatusOr<std::size_t> Buffer::AckUpTo(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  return DeleteLocked(kDeleteUpTo, static_cast<sqlite3_int64>(seq), "delete acknowledged readings");
}

absl::StatusOr<std::size_t> Buffer::EnforceAge() {
  std::lock_guard lock(mu_);
  const std::int64_t cutoff = clock_() - options_.max_age_ms;
  if (count_ == 0 || oldest_received_ >= cutoff) return 0;
  auto n = DeleteLocked(kDeleteOlderThan, cutoff, "expire old readings");
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
  if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  Stmt shift(db_, "UPDATE readings SET seq = seq + ?");
  sqlite3_bind_int64(shift.get(), 1, static_cast<sqlite3_int64>(mark));
  Stmt save(db_, kSaveLastSeq);
  sqlite3_bind_int64(save.get(), 1, static_cast<sqlite3_int64>(last_seq_ + mark));
  if (sqlite3_step(shift.get()) != SQLITE_DONE || sqlite3_step(save.get()) != SQLITE_DONE) {
    auto s = SqliteError(db_, "rebase buffer");
    Exec("ROLLBACK").IgnoreError();
    return s;
  }
  if (auto s = Exec("COMMIT"); !s.ok()) return s;
  spdlog::warn("buffer: the cloud's mark {} is above this buffer's last seq {}; pending readings renumbered", mark,
               last_seq_);
  last_seq_ += mark;
  data_cv_.notify_all();
  return absl::OkStatus();
}

void Buffer::WaitForData(std::uint64_t after, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  data_cv_.wait_for(lock, timeout, [&] { return last_seq_ > after && count_ > 0; });
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

}  // namespace strata::edge
