#include "strata/sqlite/sqlite.h"

#include <absl/strings/cord.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

namespace strata::sqlite {
namespace {

constexpr char kCodePayload[] = "type.strata/sqlite.code";

// Debian's abseil has its own string_view type: hand it std::strings.
std::string Str(std::string_view s) { return std::string(s); }

absl::StatusCode CodeFor(int extended) {
  switch (extended) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      return absl::StatusCode::kAlreadyExists;
    default:
      break;
  }
  switch (extended & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status Error(int extended, std::string_view context, std::string_view message) {
  absl::Status s(CodeFor(extended), absl::StrCat(Str(context), ": ", Str(message)));
  s.SetPayload(kCodePayload, absl::Cord(std::to_string(extended)));
  return s;
}

absl::Status Error(sqlite3* db, int rc, std::string_view context) {
  const int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
  return Error(extended != 0 ? extended : rc, context, db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

}  // namespace

std::optional<int> SqliteCode(const absl::Status& status) {
  auto payload = status.GetPayload(kCodePayload);
  int code = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &code)) return std::nullopt;
  return code;
}

// ---- Connection ------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  sqlite3* raw = nullptr;
  // NOMUTEX: a connection is used by one thread at a time (see the header), so SQLite's own
  // per-connection mutex would only cost.
  const int rc = sqlite3_open_v2(options.path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close_v2(raw);
    return Error(SQLITE_CANTOPEN, absl::StrCat("cannot open ", options.path), msg);
  }
  std::unique_ptr<Connection> db(new Connection(raw, options.path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  if (options.wal) {
    auto wal = db->Prepare("PRAGMA journal_mode=WAL");
    if (!wal.ok()) return wal.status();
    auto row = wal->Step();
    if (!row.ok()) return row.status();
    // An in-memory database answers "memory"; anything else means WAL could not be had.
    if (*row && wal->Text(0) != "wal" && wal->Text(0) != "memory") {
      return Error(SQLITE_CANTOPEN, absl::StrCat("cannot open ", options.path),
                   absl::StrCat("journal_mode is ", wal->Text(0), ", not wal"));
    }
  }
  const char* sync = options.synchronous == Synchronous::kFull     ? "PRAGMA synchronous=FULL"
                     : options.synchronous == Synchronous::kNormal ? "PRAGMA synchronous=NORMAL"
                                                                   : "PRAGMA synchronous=OFF";
  if (auto s = db->Exec(sync); !s.ok()) return s;
  return db;
}

Connection::~Connection() { sqlite3_close_v2(db_); }

absl::Status Connection::Exec(std::string_view sql) {
  char* err = nullptr;
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  const std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return Error(sqlite3_extended_errcode(db_), "exec", msg);
}

absl::StatusOr<Statement> Connection::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Error(db_, rc, absl::StrCat("prepare \"", Str(sql.substr(0, 60)), sql.size() > 60 ? "...\"" : "\""));
  }
  if (stmt == nullptr) return Error(SQLITE_MISUSE, "prepare", "no statement in the SQL text");
  return Statement(db_, stmt);
}

std::int64_t Connection::Changes() const { return sqlite3_changes64(db_); }

// ---- Statement -------------------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), bind_error_(std::move(other.bind_error_)) {
  other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    bind_error_ = std::move(other.bind_error_);
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Check(int rc, int index) {
  if (rc != SQLITE_OK && bind_error_.ok()) bind_error_ = Error(db_, rc, absl::StrCat("bind ?", index));
  return *this;
}

Statement& Statement::Bind(int i, std::int64_t v) { return Check(sqlite3_bind_int64(stmt_, i, v), i); }
Statement& Statement::Bind(int i, double v) { return Check(sqlite3_bind_double(stmt_, i, v), i); }
Statement& Statement::Bind(int i, std::string_view v) {
  return Check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8), i);
}
Statement& Statement::BindBlob(int i, std::string_view bytes) {
  return Check(sqlite3_bind_blob64(stmt_, i, bytes.data(), bytes.size(), SQLITE_TRANSIENT), i);
}
Statement& Statement::BindNull(int i) { return Check(sqlite3_bind_null(stmt_, i), i); }

absl::StatusOr<bool> Statement::Step() {
  if (!bind_error_.ok()) return bind_error_;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Error(db_, rc, "step");
}

absl::Status Statement::Run() {
  while (true) {
    auto row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = absl::OkStatus();
}

bool Statement::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
std::int64_t Statement::Int(int col) const { return sqlite3_column_int64(stmt_, col); }
double Statement::Double(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Statement::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}
std::string Statement::Blob(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

// ---- Transaction -----------------------------------------------------------------------

absl::StatusOr<Transaction> Transaction::Begin(Connection& db, TransactionMode mode) {
  if (auto s = db.Exec(mode == TransactionMode::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN"); !s.ok()) return s;
  return Transaction(&db);
}

Transaction::~Transaction() {
  // A failed COMMIT can leave the transaction open; ROLLBACK is then what ends it. Its own
  // error (no transaction is active) means there is nothing left to undo.
  if (db_ != nullptr) (void)db_->Exec("ROLLBACK");
}

absl::Status Transaction::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("transaction already ended");
  absl::Status s = db_->Exec("COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

}  // namespace strata::sqlite
