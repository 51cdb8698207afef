#include "support/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace strata::testing {

namespace {

// The kernel's range for ephemeral ports: every outgoing connection (libpq, gRPC, HTTP
// clients of any test running beside this one) takes its source port from it, so a port
// handed out from there can be taken between a server's stop and its restart.
int EphemeralRangeStart() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768;
  return in >> lo ? lo : 32768;
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

// A block of ports that this process alone hands out: blocks are claimed with an flock on a
// file per block, held until the process exits, so test processes running at once (ctest -j)
// never draw the same port, and a port stays this process's between a server's stop and its
// restart.
std::pair<int, int> ClaimPortBlock() {
  constexpr int kFirst = 10000, kBlock = 200;
  const int blocks = std::max(1, (std::min(EphemeralRangeStart(), 65536) - kFirst) / kBlock);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "strata-test-ports";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::filesystem::permissions(dir, std::filesystem::perms::all, ec);  // shared by every user's tests
  for (int b = 0; b < blocks; ++b) {
    const std::string path = (dir / ("block-" + std::to_string(b))).string();
    const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return {kFirst + b * kBlock, kBlock};  // fd stays open: the claim
    ::close(fd);
  }
  throw std::runtime_error("every block of test ports is claimed by another process");
}

// The reports a sanitizer wrote into a child's log ("WARNING: ThreadSanitizer: ...",
// "ERROR: AddressSanitizer: ..." up to its "SUMMARY:" line), so that a suite which only sees
// the exit status (66 under TSan) also shows why; empty when there are none.
std::string SanitizerReports(const std::string& log) {
  static const char* const kStarts[] = {"WARNING: ThreadSanitizer:", "ERROR: AddressSanitizer:",
                                        "ERROR: LeakSanitizer:", "runtime error:"};
  std::string out;
  std::size_t from = 0;
  while (true) {
    std::size_t at = std::string::npos;
    for (const char* s : kStarts) at = std::min(at, log.find(s, from));
    if (at == std::string::npos) break;
    const std::size_t line = log.rfind('\n', at);
    const std::size_t begin = line == std::string::npos ? 0 : line + 1;
    std::size_t end = log.find("SUMMARY:", at);
    end = end == std::string::npos ? log.size() : log.find('\n', end);
    if (end == std::string::npos) end = log.size();
    out.append(log, begin, end - begin).push_back('\n');
    from = end;
  }
  return out;
}

}  // namespace

unsigned short FreePort() {
  // Below the ephemeral range, so no outgoing connection lands on it either; in this
  // process's own block, handed out in turn (skipping any that something else holds).
  static std::mutex mu;
  static const std::pair<int, int> block = ClaimPortBlock();
  static int next = 0;
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < block.second; ++attempt) {
    const auto port = static_cast<unsigned short>(block.first + next);
    next = (next + 1) % block.second;
    if (CanBind(port)) return port;
  }
  throw std::runtime_error("no free port in this process's block");
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
    if (const std::string reports = SanitizerReports(Log()); !reports.empty()) {
      std::fprintf(stderr, "[ sanitizer ] %s (pid %d) reported:\n%s", log_path_.c_str(), static_cast<int>(pid_),
                   reports.c_str());
    }
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
