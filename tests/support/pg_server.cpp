#include "support/pg_server.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "support/process.h"

namespace strata::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kUser = "strata";
constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(30);
constexpr auto kPollInterval = std::chrono::milliseconds(25);

// The server binaries: $STRATA_PG_BINDIR, else the highest /usr/lib/postgresql/N/bin that has
// initdb and postgres. (pg_config --bindir names the client tools' directory, which on Debian
// does not hold the server.)
std::string FindBinDir() {
  if (const char* env = std::getenv("STRATA_PG_BINDIR"); env != nullptr && *env != '\0') {
    if (!fs::exists(fs::path(env) / "initdb") || !fs::exists(fs::path(env) / "postgres")) {
      throw std::runtime_error(std::string("STRATA_PG_BINDIR=") + env + " holds no initdb and postgres");
    }
    return env;
  }
  int best = -1;
  std::string best_dir;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const fs::path bin = entry.path() / "bin";
    if (!fs::exists(bin / "initdb") || !fs::exists(bin / "postgres")) continue;
    const int version = std::stoi(name);
    if (version > best) {
      best = version;
      best_dir = bin.string();
    }
  }
  if (best_dir.empty()) {
    throw std::runtime_error(
        "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (install postgresql-15, or set "
        "STRATA_PG_BINDIR)");
  }
  return best_dir;
}

// PostgreSQL refuses to run as root: as root we run it as `nobody`.
struct RunAs {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

RunAs ServerUser() {
  RunAs who;
  if (::geteuid() != 0) return who;
  const passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr) throw std::runtime_error("running as root and there is no user 'nobody' to run PostgreSQL as");
  who.switch_user = true;
  who.uid = pw->pw_uid;
  who.gid = pw->pw_gid;
  return who;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// fork + exec with stdout/stderr appended to `log`; everything the child needs is prepared
// before fork (only async-signal-safe calls after it).
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, const std::string& cwd, const RunAs& who) {
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open " + log);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    // Own process group: a Ctrl-C meant for the test runner does not hit the server first.
    ::setpgid(0, 0);
    if (who.switch_user) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0) ::_exit(126);
    }
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

// Waits for `pid` to exit; returns its wait status, or nullopt after `timeout`.
std::optional<int> WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;  // not our child any more
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::string Tail(const std::string& text, size_t n = 4000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

}  // namespace

PgServer::PgServer(Durability durability) {
  bindir_ = FindBinDir();
  const RunAs who = ServerUser();

  std::string tmpl = (fs::temp_directory_path() / "strata-pg-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  try {
    if (who.switch_user && ::chown(dir_.c_str(), who.uid, who.gid) != 0) {
      throw std::runtime_error("cannot chown " + dir_ + " to nobody");
    }
    ::chmod(dir_.c_str(), 0700);
    const std::string data = dir_ + "/data";
    const std::string log = dir_ + "/server.log";

    // Trust authentication on 127.0.0.1 and the private socket directory only: the server
    // lives as long as the test process, in a directory no one else can enter.
    const pid_t initdb = Spawn({bindir_ + "/initdb", "-D", data, "-U", kUser, "-A", "trust", "-E", "UTF8",
                                "--locale=C", "--no-sync", "--no-instructions"},
                               log, dir_, who);
    auto status = WaitExit(initdb, std::chrono::seconds(120));
    if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      if (!status) {
        ::kill(initdb, SIGKILL);
        WaitExit(initdb, std::chrono::seconds(5));
      }
      const std::string how = !status                ? "timed out"
                              : WIFEXITED(*status)   ? "exit status " + std::to_string(WEXITSTATUS(*status))
                                                     : "killed by signal " + std::to_string(WTERMSIG(*status));
      throw std::runtime_error(bindir_ + "/initdb failed (" + how + "):\n" + Tail(ReadFile(log)));
    }

    // A few attempts: the free port may be taken between FreePort() and the server binding it.
    std::string failure;
    for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) {
      port_ = FreePort();
      std::vector<std::string> args = {bindir_ + "/postgres", "-D", data, "-p", std::to_string(port_),
                                       "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir_,
                                       "-c", "max_connections=300"};
      if (durability == Durability::kFast) {
        // Saves seconds per suite; small shared buffers for many servers side by side.
        for (const char* setting :
             {"fsync=off", "synchronous_commit=off", "full_page_writes=off", "shared_buffers=64MB"}) {
          args.insert(args.end(), {"-c", setting});
        }
      }
      pid_ = Spawn(args, log, dir_, who);
      const auto deadline = Clock::now() + kStartTimeout;
      while (true) {
        if (auto exited = WaitExit(pid_, std::chrono::milliseconds(0))) {
          pid_ = -1;
          failure = "postgres exited while starting:\n" + Tail(ReadFile(log));
          break;
        }
        try {
          pqxx::connection probe(Url());
          break;  // ready
        } catch (const std::exception& e) {
          failure = e.what();
        }
        if (Clock::now() >= deadline) {
          Stop();
          throw std::runtime_error("postgres did not accept connections within 60 s (" + failure + "):\n" +
                                   Tail(ReadFile(log)));
        }
        std::this_thread::sleep_for(kPollInterval);
      }
    }
    if (pid_ < 0) throw std::runtime_error(failure);
  } catch (...) {
    Stop();
    throw;
  }
}

PgServer::~PgServer() { Stop(); }

void PgServer::Stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGINT);  // fast shutdown: roll back sessions, then exit
    if (!WaitExit(pid_, kStopTimeout)) {
      ::kill(pid_, SIGKILL);
      WaitExit(pid_, std::chrono::seconds(5));
    }
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
}

std::string PgServer::Url(const std::string& dbname) const {
  return "postgresql://" + std::string(kUser) + "@127.0.0.1:" + std::to_string(port_) + "/" + dbname;
}

std::string PgServer::CreateDatabase() {
  static std::atomic<int> counter{0};
  const std::string name = "strata_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  pqxx::connection conn(Url());
  pqxx::nontransaction tx(conn);
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  return Url(name);
}

namespace {

std::mutex g_shared_mu;
std::unique_ptr<PgServer> g_shared;  // guarded by g_shared_mu
std::string g_shared_error;          // guarded by g_shared_mu: why the start failed

}  // namespace

PgServer& SharedPgServer() {
  std::lock_guard lock(g_shared_mu);
  if (g_shared) return *g_shared;
  if (!g_shared_error.empty()) throw std::runtime_error(g_shared_error);
  try {
    g_shared = std::make_unique<PgServer>();
  } catch (const std::exception& e) {
    g_shared_error = std::string("cannot start the test PostgreSQL server: ") + e.what();
    throw std::runtime_error(g_shared_error);
  }
  return *g_shared;
}

void StopSharedPgServer() {
  std::lock_guard lock(g_shared_mu);
  g_shared.reset();
}

}  // namespace strata::testing
