// strata-sim's MQTT side: one Paho async_client that publishes with delivery tokens, keeps at
// most `max_inflight` messages outstanding, and counts each message when its delivery
// completes, into the run's Report.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "generator.h"
#include "report.h"

namespace strata::sim {

struct PublisherOptions {
  std::string url = "tcp://127.0.0.1:1883";
  std::string client_id;
  int qos = 1;
  std::size_t max_inflight = 1000;
  std::chrono::milliseconds connect_timeout{5000};
  // Answer commands to the simulated devices (responder.h) on {topic_prefix}/+/commands/+.
  bool answer_commands = true;
  std::string topic_prefix = "v1/devices";
};

// Publish, SleepUntil and the rest are called from the main thread; RequestStop from any
// thread; on_success/on_failure and the connection-lost handler run on Paho's threads and
// only update counters under mu_.
class Publisher final : public mqtt::iaction_listener {
 public:
  // Connects to the broker; nullptr with `error` set when it cannot be reached.
  static std::unique_ptr<Publisher> Connect(const PublisherOptions& options, std::vector<Device> devices,
                                            std::string& error);
  ~Publisher() override = default;

  // Hands `m` to the client, first waiting while max_inflight messages are outstanding.
  // False once a stop was requested or an error happened (see Error()).
  bool Publish(const Message& m);
  // Waits until `when`; false if a stop was requested (or an error happened) meanwhile.
  bool SleepUntil(std::chrono::steady_clock::time_point when);
  void RequestStop();
  // Waits up to `timeout` for outstanding deliveries; returns how many are still outstanding.
  std::size_t Drain(std::chrono::milliseconds timeout);
  void Disconnect(std::chrono::milliseconds timeout);

  // Why publishing ended early (connection lost, publish refused); empty if it did not.
  std::string Error();
  nlohmann::json ReportJson(const nlohmann::json& extra);

 private:
  Publisher(const PublisherOptions& options, std::vector<Device> devices);
  void on_success(const mqtt::token& tok) override;
  void on_failure(const mqtt::token& tok) override;
  bool Stopping() const { return stop_ || !error_.empty(); }  // mu_ held
  // Paho's thread: a command for one of our devices; replies as responder.h says.
  // A message on a command or desired topic.
  void OnCommand(const std::string& topic, const std::string& payload);
  void OnDesired(const std::string& device_id, const std::string& payload);

  PublisherOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;        // inflight_ fell, or stop_/lost_/error_ set
  Report report_;                     // guarded by mu_
  std::size_t inflight_ = 0;          // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  bool lost_ = false;                 // guarded by mu_
  std::string error_;                 // guarded by mu_
  std::uint64_t failures_logged_ = 0;  // guarded by mu_
  std::map<std::string, Scenario> device_scenarios_;  // read-only after construction
  // Replies already given, by command id: a command delivered twice (the edge restarted
  // between the broker's ack and its own commit) is run once and answered the same way.
  std::map<std::string, std::optional<std::string>> answered_;  // Paho's thread only
  std::deque<std::string> answered_order_;                      // Paho's thread only
  // Last, so it is destroyed first: no Paho callback can reach the members above once they
  // are gone.
  mqtt::async_client client_;
};

}  // namespace strata::sim
