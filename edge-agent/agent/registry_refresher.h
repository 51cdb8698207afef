// Keeps the DeviceDirectory in step with the cloud registry (ListDevices, every `interval`)
// when unknown devices are rejected at the edge. While the cloud is unreachable the directory
// keeps its last copy, from disk after a restart.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "agent/ingest.h"

namespace strata::edge {

class RegistryRefresher {
 public:
  RegistryRefresher(std::string cloud_address, DeviceDirectory& directory, std::chrono::milliseconds interval);
  ~RegistryRefresher();
  void Stop();

 private:
  bool RefreshOnce();

  std::string cloud_address_;
  DeviceDirectory& directory_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace strata::edge
