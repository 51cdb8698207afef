// Test harness: runs real binaries (strata-cloud, mosquitto, ...) as child processes, finds
// free ports, and waits on conditions with deadlines instead of sleeping.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace strata::testing {

// A free TCP port on 127.0.0.1 (bound to port 0 and released; the kernel does not hand it
// out again right away).
unsigned short FreePort();

// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// The directory that holds the built binary `name` (from STRATA_BIN_DIR, set by CTest).
std::string BinaryPath(const std::string& name);

// A fresh temporary directory, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process whose stdout and stderr go to `log_path`. The destructor kills it if it is
// still running.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig` and waits up to `timeout` for the exit; returns the exit status as from
  // waitpid (or -1 if it did not exit in time, after which it is killed with SIGKILL).
  int Stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits for the process to exit by itself; -1 if it did not within `timeout`.
  int Wait(std::chrono::milliseconds timeout);
  // Everything the process has written so far.
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::string log_path_;
};

}  // namespace strata::testing
