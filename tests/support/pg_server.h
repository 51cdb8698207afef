// Test harness: a real PostgreSQL server for *_pgtest.cpp tests, started by the test process
// itself (initdb + postgres) in a fresh temporary directory on a free port of 127.0.0.1, and
// stopped and removed again when it is destroyed. Each test takes a fresh database from it
// with CreateDatabase().
#pragma once

#include <string>

#include <sys/types.h>

namespace strata::testing {

class PgServer {
 public:
  // Starts the server and waits until it accepts connections. Throws std::runtime_error,
  // with the server's log, when it cannot.
  // kFast turns fsync, synchronous_commit and full_page_writes off (tests: the data is thrown
  // away, and crash safety is not what they test). kDurable keeps PostgreSQL's defaults, as
  // production runs it (the benchmarks).
  enum class Durability { kFast, kDurable };
  explicit PgServer(Durability durability = Durability::kFast);
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // postgresql://USER@127.0.0.1:PORT/dbname
  std::string Url(const std::string& dbname = "postgres") const;
  // Creates a new, uniquely named, empty database and returns its URL.
  std::string CreateDatabase();
  unsigned short port() const { return port_; }
  // The postmaster's process id (its backends are its children).
  pid_t pid() const { return pid_; }

  // Stops the server (fast shutdown) and removes its directory. Idempotent.
  void Stop();

 private:
  std::string dir_;
  std::string bindir_;
  unsigned short port_ = 0;
  pid_t pid_ = -1;
};

// One server per test process, started on first use. Throws std::runtime_error (failing the
// calling test) if PostgreSQL cannot be started; later calls fail the same way without
// retrying.
PgServer& SharedPgServer();
// Stops the shared server if it was started (test_main.cpp does this when the tests end).
void StopSharedPgServer();

}  // namespace strata::testing
