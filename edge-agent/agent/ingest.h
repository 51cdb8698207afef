// MQTT ingest and the pipeline: the edge's perception-facing side.
//
// Paho's callback thread only moves each message into a bounded queue. One pipeline thread
// owns decoding and validation, and hands each drained group of readings to the buffer as one
// group commit. A supervisor thread keeps the MQTT connection up (fixed client id, persistent
// session, QoS 1) and subscribes again whenever the broker has lost the session.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <thread>

#include <strata/clock.h>
#include <strata/metrics.h>

#include <strata/bounded_queue.h>
#include <strata/stop_signal.h>
#include "agent/buffer.h"
#include "agent/commands.h"
#include "agent/twins.h"
#include "agent/decoder.h"
#include "agent/edge_rules.h"
#include "agent/mqtt_client.h"

namespace strata::edge {

enum class UnknownDevicePolicy { kRegister, kReject };

struct IngestOptions {
  std::string mqtt_url = "tcp://127.0.0.1:1883";
  std::string client_id;
  std::string topic_prefix = "v1/devices";
  // Paho's file persistence. Paho acknowledges a QoS 1 message to the broker before it
  // hands it to our callback; messages it holds in between are kept here, so that a stop
  // or crash in that window does not lose them (they are delivered after the restart).
  std::string persistence_dir;
  DecodeLimits limits;
  std::size_t queue_capacity = 10000;
  // Most messages folded into one buffer commit.
  std::size_t max_commit_messages = 5000;
  // How long the pipeline waits, after the first message of a commit group, for more to
  // join it. Fewer commits (each one an fsync with --buffer-sync=full) for at most this much
  // added latency; 0 commits whatever is queued at once.
  std::chrono::milliseconds commit_linger{5};
  UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::kRegister;
  // Set: ingest also subscribes to the devices' command replies
  // ({topic_prefix}/+/commands/+/response) and hands them, and which devices it heard from,
  // to the outbox; Publish() carries the outbox's commands to the broker.
  CommandOutbox* commands = nullptr;
  // Set: ingest also subscribes to the devices' reported properties
  // ({topic_prefix}/+/reported) and hands them to the twins, tells them of every new broker
  // connection, and PublishRetained() carries their desired documents.
  Twins* twins = nullptr;
  // Set: the edge rules evaluate every group of readings, and their transitions commit with
  // it; the pipeline ticks them.
  EdgeRules* rules = nullptr;
};

// The devices the edge accepts under UnknownDevicePolicy::kReject: those of the config
// revision it runs (ConfigStore fills it at start-up and at every revision it applies).
class DeviceDirectory {
 public:
  bool Contains(const std::string& device_id) const;
  void Replace(std::set<std::string> devices);
  std::size_t Size() const;

 private:
  mutable std::mutex mu_;
  std::set<std::string> devices_;  // guarded by mu_
};

struct RawMessage {
  std::string topic;
  std::string payload;
  std::int64_t received_at = 0;
  // A stored retained message, and one the broker replayed on a resumed session (see
  // MqttClient).
  bool retained = false;
  bool replayed = false;
};

class Ingest {
 public:
  Ingest(IngestOptions options, Buffer& buffer, MetricsRegistry& metrics, Clock clock,
         const DeviceDirectory* directory);
  ~Ingest();
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  void Start();
  // Graceful stop: disconnects from the broker (no new messages), then commits everything
  // already received to the buffer, then joins.
  void Stop();

  bool MqttConnected() const { return mqtt_connected_.load(); }
  // The unknown-device policy, changed while running (a config revision's settings).
  void SetUnknownDevices(UnknownDevicePolicy policy) { unknown_devices_ = policy; }
  UnknownDevicePolicy UnknownDevices() const { return unknown_devices_.load(); }
  // Publishes each (topic, payload) on the agent's connection at QoS 1 and waits for the
  // broker's PUBACKs; one status per message (UNAVAILABLE while it is not connected). Call
  // only between Start() and Stop().
  std::vector<absl::Status> Publish(const std::vector<std::pair<std::string, std::string>>& messages);
  // The same, retained.
  std::vector<absl::Status> PublishRetained(const std::vector<std::pair<std::string, std::string>>& messages);
  std::size_t QueueDepth() const { return queue_.Size(); }

  // Decodes and commits one group of messages; public for tests of the pipeline.
  void Process(std::vector<RawMessage>& messages);

 private:
  void PipelineLoop();
  void SupervisorLoop();

  IngestOptions options_;
  Buffer& buffer_;
  Clock clock_;
  const DeviceDirectory* directory_;
  Decoder decoder_;
  BoundedQueue<RawMessage> queue_;
  std::unique_ptr<MqttClient> client_;
  std::thread pipeline_;
  std::thread supervisor_;
  StopSignal stop_;  // notified on connection loss too: the supervisor wakes to reconnect
  std::atomic<bool> mqtt_connected_{false};
  std::atomic<UnknownDevicePolicy> unknown_devices_;

  Counter& received_;
  Counter& accepted_;
  Counter& retained_repeats_;
  std::map<RejectReason, Counter*> rejected_;
  Gauge& mqtt_connected_gauge_;
  Counter& buffer_errors_;
};

}  // namespace strata::edge
