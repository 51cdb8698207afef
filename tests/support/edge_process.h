// A running strata-edge process for end-to-end tests: edge id gw-test, its data under
// WORKDIR/edge, a free status port, debug logs in WORKDIR/strata-edge.N.log. Start() waits
// until it is connected to the broker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace strata::testing {

class EdgeProcess {
 public:
  EdgeProcess(const std::string& workdir, std::string mqtt_url, std::string cloud, std::vector<std::string> extra = {});
  // Starts it (again, on the same data directory and port).
  void Start();
  std::string MetricsBody() const;
  // One sample of /metrics ("name" or "name{labels}"), as MetricSample reads it.
  double Get(const std::string& sample) const;
  Process& process() { return *process_; }
  unsigned short HttpPort() const { return http_port_; }

 private:
  std::string workdir_, mqtt_url_, cloud_;
  unsigned short http_port_;
  std::vector<std::string> extra_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace strata::testing
