#include "postgres/pg_pool.h"

#include "codec.h"

#include <utility>

#include <absl/strings/str_cat.h>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <spdlog/spdlog.h>

namespace strata::storage {
namespace {

// Run once per new connection: idempotent DDL ("CREATE ... IF NOT EXISTS") would otherwise
// print NOTICEs to stderr through libpqxx's default notice processor.
constexpr std::string_view kSessionSetup = "SET client_min_messages TO warning";

}  // namespace

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::Create(std::string url, int size) {
  std::unique_ptr<PgPool> pool(new PgPool(std::move(url), size));
  auto first = pool->Connect();
  if (!first.ok()) return first.status();
  pool->idle_.push_back(*std::move(first));
  pool->open_ = 1;
  return pool;
}

absl::StatusOr<std::unique_ptr<PgSession>> PgPool::Connect() const {
  try {
    auto session = std::make_unique<PgSession>();
    session->conn = std::make_unique<pqxx::connection>(url_);
    pqxx::nontransaction tx(*session->conn);
    tx.exec(std::string(kSessionSetup));
    return session;
  } catch (const std::exception& e) {
    // libpq's message names host and port, never the password.
    return UnavailableDbError("PostgreSQL", absl::StrCat("cannot connect: ", e.what()));
  }
}

absl::StatusOr<PgPool::Lease> PgPool::Acquire(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (!freed_.wait_for(lock, wait, [&] { return !idle_.empty() || open_ < size_; })) {
    return absl::UnavailableError("no free PostgreSQL connection in the pool");
  }
  if (!idle_.empty()) {
    auto session = std::move(idle_.back());
    idle_.pop_back();
    lock.unlock();
    if (!session->conn->is_open()) {
      // Closed behind our back: reconnect now (the slot stays counted).
      auto fresh = Connect();
      if (!fresh.ok()) {
        Return(nullptr, true);
        return fresh.status();
      }
      session = *std::move(fresh);
    }
    return Lease(this, std::move(session));
  }
  ++open_;
  lock.unlock();
  auto fresh = Connect();
  if (!fresh.ok()) {
    Return(nullptr, true);
    return fresh.status();
  }
  return Lease(this, *std::move(fresh));
}

void PgPool::Return(std::unique_ptr<PgSession> session, bool broken) {
  std::unique_ptr<PgSession> doomed;  // closed outside the lock
  {
    std::lock_guard lock(mu_);
    if (broken || session == nullptr) {
      doomed = std::move(session);
      --open_;
    } else {
      idle_.push_back(std::move(session));
    }
  }
  freed_.notify_one();
}

void PgPool::DropIdle() {
  std::vector<std::unique_ptr<PgSession>> doomed;
  {
    std::lock_guard lock(mu_);
    doomed.swap(idle_);
    open_ -= static_cast<int>(doomed.size());
  }
  freed_.notify_all();
}

PgPool::Lease::~Lease() {
  if (pool_ != nullptr) pool_->Return(std::move(session_), broken_);
}

}  // namespace strata::storage
