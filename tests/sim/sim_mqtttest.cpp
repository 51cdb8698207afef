// strata-sim against a real mosquitto: what a subscriber receives is exactly what the run's
// report says was published; SIGTERM stops it cleanly; an unreachable broker exits 1.
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "support/mosquitto.h"
#include "support/process.h"

#ifndef STRATA_SIM_BIN
#error "STRATA_SIM_BIN (path of the strata-sim binary) must be defined by the build"
#endif

namespace strata::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kTelemetry = "v1/devices/+/telemetry";
constexpr const char* kSentinel = "strata-test/sentinel";

// Records every message on v1/devices/+/telemetry. Paho's callback thread only appends under
// the lock; the test thread waits on conditions with deadlines.
class Subscriber {
 public:
  explicit Subscriber(const std::string& url) : client_(url, "sim-mqtttest-sub") {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard lk(mu_);
      if (m->get_topic() == kSentinel) {
        sentinel_ = true;
      } else {
        received_.push_back({m->get_topic(), m->get_payload_str()});
      }
    });
    client_.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
    client_.subscribe(kTelemetry, 1)->wait();
    client_.subscribe(kSentinel, 1)->wait();
  }
  ~Subscriber() {
    try {
      client_.disconnect()->wait_for(2s);
    } catch (const mqtt::exception&) {
      // The broker may be gone already; nothing left to clean up.
    }
  }

  // Publishes a sentinel through the broker and waits for it to come back: the broker
  // queues it after every message it accepted before, so once it arrives nothing published
  // earlier is still on the way.
  bool Flush(std::chrono::milliseconds timeout) {
    {
      std::lock_guard lk(mu_);
      sentinel_ = false;
    }
    client_.publish(kSentinel, "done", 4, 1, false)->wait();
    return WaitFor([this] {
      std::lock_guard lk(mu_);
      return sentinel_;
    }, timeout);
  }

  std::size_t Count() {
    std::lock_guard lk(mu_);
    return received_.size();
  }
  std::vector<std::pair<std::string, std::string>> Received() {
    std::lock_guard lk(mu_);
    return received_;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> received_;  // guarded by mu_
  bool sentinel_ = false;                                      // guarded by mu_
  mqtt::async_client client_;                                  // last: destroyed first
};

std::string DeviceOfTopic(const std::string& topic) {
  const std::string head = "v1/devices/", tail = "/telemetry";
  return topic.substr(head.size(), topic.size() - head.size() - tail.size());
}

json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

class SimMqttTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<MosquittoServer>();
    sub_ = std::make_unique<Subscriber>(broker_->Url());
  }

  std::vector<std::string> SimArgs(std::vector<std::string> extra) {
    std::vector<std::string> args = {STRATA_SIM_BIN, "--mqtt-url", broker_->Url(), "--report", report_path_,
                                     "--client-id", "sim-under-test"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  TempDir dir_;
  std::string report_path_ = dir_.path() + "/report.json";
  std::string log_path_ = dir_.path() + "/sim.log";
  std::unique_ptr<MosquittoServer> broker_;
  std::unique_ptr<Subscriber> sub_;
};

TEST_F(SimMqttTest, SubscriberReceivesExactlyWhatTheReportSays) {
  Process sim(SimArgs({"--count", "500", "--rate", "0", "--seed", "7"}), log_path_);
  ASSERT_EQ(ExitCode(sim.Wait(60s)), 0) << sim.Log();
  const json report = ReadJson(report_path_);
  EXPECT_EQ(report["published"], 500);
  EXPECT_EQ(report["good"], 500);
  EXPECT_EQ(report["failed"], 0);
  EXPECT_EQ(report["unconfirmed"], 0);

  ASSERT_TRUE(sub_->Flush(30s)) << "sentinel did not come back; received " << sub_->Count();
  std::map<std::string, std::uint64_t> per_device;
  std::uint64_t readings = 0;
  for (const auto& [topic, payload] : sub_->Received()) {
    ++per_device[DeviceOfTopic(topic)];
    const json doc = json::parse(payload);
    ASSERT_TRUE(doc.at("ts").is_number_integer()) << payload;
    readings += doc.at("values").size();
  }
  EXPECT_EQ(sub_->Count(), 500u);
  EXPECT_EQ(readings, report["readings"].get<std::uint64_t>());
  ASSERT_EQ(per_device.size(), report["by_device"].size());
  for (const auto& [id, d] : report["by_device"].items()) {
    EXPECT_EQ(per_device[id], d["published"].get<std::uint64_t>()) << id;
  }
}

TEST_F(SimMqttTest, MalformedMessagesAreDeliveredAsReported) {
  // Every malformed kind still goes to one level under v1/devices/, so a `+` subscriber (the
  // edge agent) sees all of them and can reject each for its reason.
  Process sim(SimArgs({"--count", "200", "--rate", "0", "--seed", "3", "--malformed-ratio", "0.25",
                       "--payload-shape", "mixed"}),
              log_path_);
  ASSERT_EQ(ExitCode(sim.Wait(60s)), 0) << sim.Log();
  const json report = ReadJson(report_path_);
  ASSERT_EQ(report["published"], 200);
  ASSERT_EQ(report["malformed"], 50);
  ASSERT_TRUE(sub_->Flush(30s));

  std::map<std::string, std::uint64_t> kinds;
  for (const auto& [topic, payload] : sub_->Received()) {
    if (DeviceOfTopic(topic).size() > 128) {
      ++kinds["invalid_device_id"];
    } else if (!json::accept(payload)) {
      ++kinds["invalid_json"];
    } else if (payload.size() > 64 * 1024) {
      ++kinds["oversized"];
    }
  }
  EXPECT_EQ(sub_->Count(), 200u);
  for (const char* k : {"invalid_device_id", "invalid_json", "oversized"}) {
    EXPECT_EQ(kinds[k], report["malformed_by_kind"][k].get<std::uint64_t>()) << k;
    EXPECT_EQ(kinds[k], 10u) << k;
  }
}

TEST_F(SimMqttTest, SigtermStopsCleanlyAndReportsEverything) {
  Process sim(SimArgs({"--rate", "200", "--seed", "5"}), log_path_);
  ASSERT_TRUE(WaitFor([&] { return sub_->Count() >= 50; }, 30s)) << sim.Log();
  ASSERT_EQ(ExitCode(sim.Stop(SIGTERM, 20s)), 0) << sim.Log();
  const json report = ReadJson(report_path_);
  ASSERT_TRUE(sub_->Flush(30s));
  EXPECT_GE(report["published"].get<std::uint64_t>(), 50u);
  EXPECT_EQ(report["unconfirmed"], 0);
  EXPECT_EQ(sub_->Count(), report["published"].get<std::uint64_t>());
}

TEST(SimNoBrokerTest, UnreachableBrokerExitsWithOne) {
  TempDir dir;
  const unsigned short port = FreePort();  // nothing listens there
  Process sim({STRATA_SIM_BIN, "--mqtt-url", "tcp://127.0.0.1:" + std::to_string(port), "--count", "10",
               "--connect-timeout", "2"},
              dir.path() + "/sim.log");
  EXPECT_EQ(ExitCode(sim.Wait(30s)), 1) << sim.Log();
  EXPECT_NE(sim.Log().find("cannot reach the MQTT broker"), std::string::npos) << sim.Log();
}

}  // namespace
}  // namespace strata::testing
