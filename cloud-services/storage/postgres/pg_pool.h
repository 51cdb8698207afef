// A bounded pool of PostgreSQL connections (libpqxx). Acquire() hands out a connection for
// the duration of one operation and blocks while all pool_size connections are in use.
// Connections are opened lazily, beyond the first, and a connection seen broken is dropped
// so the next Acquire() opens a fresh one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <pqxx/connection>

namespace strata::storage {

// One pooled connection and the per-session state built on it.
struct PgSession {
  std::unique_ptr<pqxx::connection> conn;
  // Backend pid for which the session's temporary staging table exists; 0 if none yet. A
  // different backendpid() means libpq reconnected under us and temp tables are gone.
  int staging_backend_pid = 0;
};

class PgPool {
 public:
  class Lease {
   public:
    Lease(Lease&& other) noexcept
        : pool_(other.pool_), session_(std::move(other.session_)), broken_(other.broken_) {
      other.pool_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PgSession& session() { return *session_; }
    pqxx::connection& conn() { return *session_->conn; }
    // The connection failed: close it instead of returning it to the pool.
    void MarkBroken() { broken_ = true; }

   private:
    friend class PgPool;
    Lease(PgPool* pool, std::unique_ptr<PgSession> session) : pool_(pool), session_(std::move(session)) {}
    PgPool* pool_;
    std::unique_ptr<PgSession> session_;
    bool broken_ = false;
  };

  // Opens the first connection now, so a bad URL or an unreachable server shows at start-up
  // (UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<PgPool>> Create(std::string url, int size);

  // Waits up to `wait` for a free slot; UNAVAILABLE when none frees up or a new connection
  // cannot be opened.
  absl::StatusOr<Lease> Acquire(std::chrono::milliseconds wait = std::chrono::seconds(30));

  // Closes every idle connection (after the server dropped them all, say); leased ones are
  // closed on return if they turn out broken.
  void DropIdle();

 private:
  PgPool(std::string url, int size) : url_(std::move(url)), size_(size) {}
  absl::StatusOr<std::unique_ptr<PgSession>> Connect() const;
  void Return(std::unique_ptr<PgSession> session, bool broken);

  const std::string url_;
  const int size_;
  std::mutex mu_;
  std::condition_variable freed_;                   // signalled when open_ drops or idle_ grows
  std::vector<std::unique_ptr<PgSession>> idle_;    // guarded by mu_
  int open_ = 0;                                    // guarded by mu_: idle + leased + connecting
};

}  // namespace strata::storage
