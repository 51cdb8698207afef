#include "support/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace strata::testing {

namespace {

// The kernel's range for ephemeral ports: every outgoing connection (libpq, gRPC, HTTP
// clients of any test running beside this one) takes its source port from it, so a port
// handed out from there can be taken between a server's stop and its restart.
std::pair<int, int> EphemeralRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768, hi = 60999;
  if (!(in >> lo >> hi)) return {32768, 60999};
  return {lo, hi};
}

bool CanBind(unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

unsigned short FreePort() {
  // A random free port below the ephemeral range (10000 up to it): no outgoing connection
  // ever lands there, and test processes running at once rarely draw the same one.
  static std::mt19937 rng(static_cast<unsigned>(::getpid()) ^
                          static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  static std::mutex mu;
  const auto [ephemeral_lo, ephemeral_hi] = EphemeralRange();
  const int lo = 10000, hi = std::max(lo + 1000, ephemeral_lo - 1);
  std::lock_guard lock(mu);
  std::uniform_int_distribution<int> pick(lo, hi);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const auto port = static_cast<unsigned short>(pick(rng));
    if ((port < ephemeral_lo || port > ephemeral_hi) && CanBind(port)) return port;
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string BinaryPath(const std::string& name) {
  const char* dir = std::getenv("STRATA_BIN_DIR");
  if (dir == nullptr) throw std::runtime_error("STRATA_BIN_DIR is not set; run the tests through ctest");
  return std::string(dir) + "/" + name;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "strata-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  // STRATA_KEEP_TEST_DIRS=1 keeps logs and data of a run for a post-mortem.
  if (std::getenv("STRATA_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv, std::string log_path) : log_path_(std::move(log_path)) {
  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open " + log_path_);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::setpgid(0, 0);
    // If the test process dies without its destructors running, take the child with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
}

Process::~Process() {
  if (Running()) Stop(SIGKILL, std::chrono::seconds(5));
}

bool Process::Running() {
  if (exited_ || pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    return false;
  }
  return true;
}

int Process::Wait(std::chrono::milliseconds timeout) {
  if (!WaitFor([this] { return !Running(); }, timeout)) return -1;
  return status_;
}

int Process::Stop(int sig, std::chrono::milliseconds timeout) {
  if (!Running()) return status_;
  ::kill(pid_, sig);
  int st = Wait(timeout);
  if (st == -1) {
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
  return st;
}

std::string Process::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace strata::testing
