// Keeps the DeviceDirectory in step with the cloud registry (ListDevices, every `interval`)
// when unknown devices are rejected at the edge. While the cloud is unreachable the directory
// keeps its last copy, from disk after a restart.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include <strata/stop_signal.h>

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
  StopSignal stop_;
  std::thread thread_;
};

}  // namespace strata::edge
