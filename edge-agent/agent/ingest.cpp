#include "agent/ingest.h"

#include <filesystem>

#include <spdlog/spdlog.h>
#include <strata/topics.h>

namespace strata::edge {

// ---------------------------------------------------------------------------------------
// DeviceDirectory

bool DeviceDirectory::Contains(const std::string& device_id) const {
  std::lock_guard lock(mu_);
  return devices_.count(device_id) > 0;
}

std::size_t DeviceDirectory::Size() const {
  std::lock_guard lock(mu_);
  return devices_.size();
}

void DeviceDirectory::Replace(std::set<std::string> devices) {
  std::lock_guard lock(mu_);
  devices_ = std::move(devices);
}

// ---------------------------------------------------------------------------------------
// Ingest

Ingest::Ingest(IngestOptions options, Buffer& buffer, MetricsRegistry& metrics, Clock clock,
               const DeviceDirectory* directory)
    : options_(std::move(options)),
      buffer_(buffer),
      clock_(std::move(clock)),
      directory_(directory),
      decoder_(options_.topic_prefix, options_.limits),
      queue_(options_.queue_capacity),
      unknown_devices_(options_.unknown_devices),
      received_(metrics.GetCounter("strata_edge_messages_received_total", "MQTT messages received")),
      accepted_(metrics.GetCounter("strata_edge_messages_accepted_total", "MQTT messages decoded and buffered")),
      retained_repeats_(metrics.GetCounter("strata_edge_retained_repeats_total",
                                           "Retained MQTT messages without a ts that the broker replayed on a "
                                           "resumed session's subscribe, skipped (received when published)")),
      mqtt_connected_gauge_(metrics.GetGauge("strata_edge_mqtt_connected", "1 while connected to the local broker")),
      buffer_errors_(metrics.GetCounter("strata_edge_buffer_errors_total", "Failed buffer commits (retried)")) {
  for (RejectReason r : kAllRejectReasons) {
    rejected_[r] = &metrics.GetCounter("strata_edge_messages_rejected_total", "MQTT messages rejected, by reason",
                                       {{"reason", ReasonLabel(r)}});
  }
  metrics.AddCallbackGauge("strata_edge_ingest_queue_depth", "Messages received but not yet processed",
                           [this] { return static_cast<double>(queue_.Size()); });
  if (!options_.persistence_dir.empty()) std::filesystem::create_directories(options_.persistence_dir);
  client_ = std::make_unique<MqttClient>(
      options_.mqtt_url, options_.client_id, options_.persistence_dir,
      [this](std::string_view topic, std::string_view payload, bool retained, bool replayed) {
        // Paho's thread: no work here, only the hand-over (which waits when the queue is full).
        // The queue is closed only after the client is destroyed, so this cannot fail.
        queue_.Push(RawMessage{std::string(topic), std::string(payload), clock_(), retained, replayed});
      },
      [this](const std::string& cause) {
        mqtt_connected_ = false;
        mqtt_connected_gauge_.Set(0);
        spdlog::warn("mqtt: connection lost: {}", cause.empty() ? "unknown cause" : cause);
        stop_.Notify();
      });
}

Ingest::~Ingest() { Stop(); }

void Ingest::Start() {
  pipeline_ = std::thread([this] { PipelineLoop(); });
  supervisor_ = std::thread([this] { SupervisorLoop(); });
}

void Ingest::Stop() {
  if (!stop_.Stop()) return;
  if (supervisor_.joinable()) supervisor_.join();
  if (client_->IsConnected()) {
    if (auto s = client_->Disconnect(std::chrono::seconds(5)); !s.ok()) spdlog::warn("mqtt: {}", s.ToString());
  }
  mqtt_connected_ = false;
  mqtt_connected_gauge_.Set(0);
  // Destroying the client ends its callbacks; only then may the queue refuse messages. The
  // pipeline keeps draining meanwhile, so a callback waiting on a full queue gets through.
  client_.reset();
  queue_.Close();
  if (pipeline_.joinable()) pipeline_.join();
}

std::vector<absl::Status> Ingest::Publish(const std::vector<std::pair<std::string, std::string>>& messages) {
  if (!mqtt_connected_) {
    return std::vector<absl::Status>(messages.size(), absl::UnavailableError("not connected to the broker"));
  }
  return client_->PublishAll(messages, 1, false, std::chrono::seconds(5));
}

std::vector<absl::Status> Ingest::PublishRetained(const std::vector<std::pair<std::string, std::string>>& messages) {
  if (!mqtt_connected_) {
    return std::vector<absl::Status>(messages.size(), absl::UnavailableError("not connected to the broker"));
  }
  return client_->PublishAll(messages, 1, true, std::chrono::seconds(5));
}

void Ingest::SupervisorLoop() {
  auto backoff = std::chrono::milliseconds(200);
  const std::string filter = options_.topic_prefix + "/+/telemetry";
  const std::string responses = options_.topic_prefix + "/+/commands/+/response";
  const std::string reported = options_.topic_prefix + "/+/reported";
  bool subscribed = false;  // by this process, on any connection
  while (!stop_.stopped()) {
    if (!mqtt_connected_ || !client_->IsConnected()) {
      mqtt_connected_ = false;
      // A connection we did not finish setting up (a connect that answered after we gave up,
      // a failed subscribe): start it again.
      if (client_->IsConnected()) (void)client_->Disconnect(std::chrono::seconds(2));
      // Persistent session (clean_session false): the broker keeps our QoS 1 messages.
      auto connected = client_->Connect(false, std::chrono::seconds(20), std::chrono::seconds(5));
      absl::Status status = connected.status();
      // Subscribe on a new session (first start, or the broker lost it), and once per process
      // even on a resumed one: a subscribe that failed before a restart would otherwise leave
      // a session that is resumed, never subscribed again, and gets nothing.
      if (connected.ok() && (!*connected || !subscribed)) {
        status = client_->Subscribe(filter, 1, std::chrono::seconds(5));
        if (status.ok() && options_.commands) status = client_->Subscribe(responses, 1, std::chrono::seconds(5));
        if (status.ok() && options_.twins) status = client_->Subscribe(reported, 1, std::chrono::seconds(5));
        subscribed = status.ok();
        if (!status.ok()) (void)client_->Disconnect(std::chrono::seconds(2));
      }
      if (!status.ok()) {
        spdlog::debug("mqtt: cannot connect to {}: {}", options_.mqtt_url, status.ToString());
        stop_.WaitFor(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      mqtt_connected_ = true;
      mqtt_connected_gauge_.Set(1);
      backoff = std::chrono::milliseconds(200);
      spdlog::info("mqtt: connected to {} as {} ({}), subscribed to {}{}", options_.mqtt_url, options_.client_id,
                   *connected ? "session resumed" : "new session", filter,
                   std::string(options_.commands ? " and " + responses : "") +
                       (options_.twins ? " and " + reported : ""));
      // The broker may have lost its retained messages (restarted without persistence).
      if (options_.twins) options_.twins->BrokerConnected();
    }
    stop_.WaitFor(std::chrono::milliseconds(500), [this] { return !mqtt_connected_.load(); });
  }
}

void Ingest::PipelineLoop() {
  std::vector<RawMessage> batch;
  while (true) {
    batch.clear();
    if (!queue_.PopBatch(batch, options_.max_commit_messages, std::chrono::milliseconds(200), options_.commit_linger)) break;
    if (!batch.empty()) Process(batch);
    if (options_.rules) options_.rules->Tick();
    if (auto expired = buffer_.EnforceAge(); expired.ok() && *expired > 0) {
      spdlog::warn("buffer: dropped {} readings older than the maximum age", *expired);
    }
  }
}

void Ingest::Process(std::vector<RawMessage>& messages) {
  std::vector<EdgeItem> items;
  DecodeResult result;
  std::size_t accepted = 0;
  std::vector<std::string> seen;  // devices heard from, for the command outbox
  std::string device_id, command_id;
  for (auto& m : messages) {
    received_.Inc();
    if (options_.commands && topics::ParseCommandTopic(options_.topic_prefix, m.topic, true, device_id, command_id)) {
      if (m.replayed) continue;  // a retained reply: taken when it was published
      options_.commands->OnResponse(device_id, command_id, m.payload);
      seen.push_back(device_id);
      continue;
    }
    if (options_.twins && topics::ParseDeviceTopic(options_.topic_prefix, m.topic, "reported", device_id)) {
      options_.twins->OnReported(device_id, m.payload, m.retained);
      if (options_.commands) seen.push_back(device_id);
      continue;
    }
    decoder_.Decode(m.topic, m.payload, m.received_at, result);
    if (m.replayed && result.ok && result.stamped_on_receipt) {
      // Almost surely received when it was published (the subscription lived in the
      // session), and without a ts of its own it would become a new reading at every start.
      // One that carries its ts goes on: storage keeps one value per (device, key, ts).
      retained_repeats_.Inc();
      continue;
    }
    if (result.ok && unknown_devices_.load() == UnknownDevicePolicy::kReject && directory_ != nullptr &&
        !directory_->Contains(result.items.front().device_id)) {
      result.ok = false;
      result.reason = RejectReason::kUnknownDevice;
      result.detail = "device is not in the registry and auto-registration is off";
    }
    if (!result.ok) {
      rejected_[result.reason]->Inc();
      spdlog::warn("rejected message on '{}' ({}): {}", m.topic.substr(0, 200), ReasonLabel(result.reason),
                   result.detail);
      continue;
    }
    ++accepted;
    if (options_.commands && (seen.empty() || seen.back() != result.items.front().device_id)) {
      seen.push_back(result.items.front().device_id);
    }
    for (auto& item : result.items) items.push_back(std::move(item));
  }
  if (options_.commands && !seen.empty()) options_.commands->DevicesSeen(seen);
  // A failed commit is retried until it succeeds: these messages are already acknowledged to
  // the broker, so giving up would lose them.
  auto backoff = std::chrono::milliseconds(50);
  const auto rules = options_.rules && !items.empty() ? options_.rules->Evaluate(items) : nullptr;
  while (true) {
    auto appended = buffer_.Append(items, rules.get());
    if (appended.ok()) {
      if (rules) options_.rules->Committed();
      break;
    }
    buffer_errors_.Inc();
    spdlog::error("buffer commit failed, retrying: {}", appended.status().ToString());
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
  accepted_.Inc(accepted);
}

}  // namespace strata::edge
