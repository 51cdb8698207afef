// Test harness: a real mosquitto broker on a free loopback port, with its own config and
// persistence directory in a temporary folder. Restartable on the same port and state, so
// tests can take the broker down and bring it back.
#pragma once

#include <memory>
#include <string>

#include "support/process.h"

namespace strata::testing {

class MosquittoServer {
 public:
  MosquittoServer();
  ~MosquittoServer();

  std::string Url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  unsigned short Port() const { return port_; }
  // The broker's process id, or -1 while it is stopped.
  pid_t Pid() const { return process_ ? process_->pid() : -1; }
  // Graceful stop (SIGTERM: the broker saves its persistent sessions) and start again.
  void Restart();
  void Stop();
  void Start();

 private:
  TempDir dir_;
  unsigned short port_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace strata::testing
