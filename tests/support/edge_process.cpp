#include "support/edge_process.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/metrics_text.h"

namespace strata::testing {

EdgeProcess::EdgeProcess(const std::string& workdir, std::string mqtt_url, std::string cloud,
                         std::vector<std::string> extra)
    : workdir_(workdir), mqtt_url_(std::move(mqtt_url)), cloud_(std::move(cloud)), http_port_(FreePort()),
      extra_(std::move(extra)) {
  Start();
}

void EdgeProcess::Start() {
  const char* dir = std::getenv("STRATA_EDGE_BIN_DIR");
  ASSERT_NE(dir, nullptr);
  std::vector<std::string> argv = {std::string(dir) + "/strata-edge", "--edge-id", "gw-test", "--mqtt-url",
                                   mqtt_url_, "--cloud", cloud_, "--data-dir", workdir_ + "/edge",
                                   "--http-listen", "127.0.0.1:" + std::to_string(http_port_), "--log-level",
                                   "debug", "--batch-linger-ms", "5", "--buffer-sync", "normal"};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  process_ = std::make_unique<Process>(argv, workdir_ + "/strata-edge." + std::to_string(++starts_) + ".log");
  ASSERT_TRUE(WaitFor([&] { return !process_->Running() || Get("strata_edge_mqtt_connected") == 1; },
                      std::chrono::seconds(30)) &&
              process_->Running())
      << "strata-edge did not connect to the broker; log:\n" << process_->Log();
}

std::string EdgeProcess::MetricsBody() const {
  try {
    return HttpRequest("GET", "127.0.0.1", http_port_, "/metrics").body;
  } catch (const std::exception&) {
    return {};
  }
}

double EdgeProcess::Get(const std::string& sample) const { return MetricSample(MetricsBody(), sample); }

}  // namespace strata::testing
