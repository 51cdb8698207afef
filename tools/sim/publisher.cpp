#include "publisher.h"

#include <cstdint>

#include <spdlog/spdlog.h>

#include "responder.h"
#include "strata/topics.h"

namespace strata::sim {
namespace {

// What a delivery callback needs to count a message, packed into the token's user context
// so nothing is allocated per message: device index (32 bits), malformed kind + 1 or 0 for a
// good message (8 bits), readings (24 bits).
static_assert(sizeof(void*) == sizeof(std::uint64_t), "delivery tags need 64-bit pointers");

void* PackTag(const Message& m) {
  const std::uint64_t kind = m.malformed ? static_cast<std::uint64_t>(*m.malformed) + 1 : 0;
  const std::uint64_t tag = (static_cast<std::uint64_t>(m.device) & 0xffffffffULL) | (kind << 32) |
                            ((static_cast<std::uint64_t>(m.readings) & 0xffffffULL) << 40);
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(tag));
}

struct Tag {
  std::size_t device;
  std::optional<MalformedKind> malformed;
  std::size_t readings;
};

Tag UnpackTag(const void* ctx) {
  const auto tag = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(ctx));
  const std::uint64_t kind = (tag >> 32) & 0xff;
  return {static_cast<std::size_t>(tag & 0xffffffffULL),
          kind == 0 ? std::nullopt : std::optional(static_cast<MalformedKind>(kind - 1)),
          static_cast<std::size_t>(tag >> 40)};
}

}  // namespace

Publisher::Publisher(const PublisherOptions& options, std::vector<Device> devices)
    : options_(options),
      report_(devices),
      // Paho counts publishes it has queued but not yet written as "buffered" and refuses
      // more than max_buffered_messages (default 100) even while connected; our own bound
      // on outstanding messages is the one that should apply.
      client_(options.url, options.client_id,
              mqtt::create_options(MQTTVERSION_DEFAULT, static_cast<int>(options.max_inflight) + 1)) {
  for (const auto& d : devices) device_scenarios_[d.id] = d.scenario;
  client_.set_message_callback([this](mqtt::const_message_ptr m) { OnCommand(m->get_topic(), m->to_string()); });
  client_.set_connection_lost_handler([this](const std::string& cause) {
    std::lock_guard lk(mu_);
    lost_ = true;
    if (error_.empty()) error_ = "connection lost" + (cause.empty() ? std::string() : ": " + cause);
    cv_.notify_all();
  });
}

std::unique_ptr<Publisher> Publisher::Connect(const PublisherOptions& options, std::vector<Device> devices,
                                              std::string& error) {
  std::unique_ptr<Publisher> p;
  try {
    p.reset(new Publisher(options, std::move(devices)));
  } catch (const mqtt::exception& e) {
    // A malformed URL or client id.
    error = "cannot create an MQTT client for " + options.url + ": " + e.what();
    return nullptr;
  }
  const auto timeout_s = std::chrono::duration_cast<std::chrono::seconds>(options.connect_timeout);
  auto conn = mqtt::connect_options_builder()
                  .clean_session(true)
                  .keep_alive_interval(std::chrono::seconds(30))
                  .connect_timeout(std::max(timeout_s, std::chrono::seconds(1)))
                  .finalize();
  try {
    auto tok = p->client_.connect(conn);
    if (!tok->wait_for(options.connect_timeout + std::chrono::seconds(1))) {
      error = "cannot reach the MQTT broker at " + options.url + ": no answer within " +
              std::to_string(options.connect_timeout.count()) + " ms";
      return nullptr;
    }
  } catch (const mqtt::exception& e) {
    error = "cannot reach the MQTT broker at " + options.url + ": " + e.what();
    return nullptr;
  }
  if (options.answer_commands) {
    // Commands, and the twins' desired documents (answered with what the device applied).
    for (const std::string& filter : {options.topic_prefix + "/+/commands/+", options.topic_prefix + "/+/desired"}) {
      try {
        if (!p->client_.subscribe(filter, 1)->wait_for(options.connect_timeout)) {
          error = "no answer to the subscription to " + filter;
          return nullptr;
        }
      } catch (const mqtt::exception& e) {
        error = "cannot subscribe to " + filter + ": " + e.what();
        return nullptr;
      }
    }
  }
  return p;
}

void Publisher::OnDesired(const std::string& device_id, const std::string& payload) {
  auto device = device_scenarios_.find(device_id);
  if (device == device_scenarios_.end()) return;  // not one of ours
  const auto reported = TwinReport(device->second, payload);
  if (!reported) return;
  spdlog::info("desired of {}: {} -> reported {}", device_id, payload, *reported);
  try {
    client_.publish(topics::DeviceTopic(options_.topic_prefix, device_id, "reported"), *reported, 1, false);
  } catch (const mqtt::exception& e) {
    spdlog::warn("cannot report the twin of {}: {}", device_id, e.what());
  }
}

void Publisher::OnCommand(const std::string& topic, const std::string& payload) {
  std::string device_id, command_id;
  if (topics::ParseDeviceTopic(options_.topic_prefix, topic, "desired", device_id)) {
    OnDesired(device_id, payload);
    return;
  }
  if (!topics::ParseCommandTopic(options_.topic_prefix, topic, false, device_id, command_id)) return;
  auto device = device_scenarios_.find(device_id);
  if (device == device_scenarios_.end()) return;  // not one of ours
  auto [it, fresh] = answered_.try_emplace(command_id);
  if (fresh) {
    it->second = CommandReply(device->second, device_id, payload);
    answered_order_.push_back(command_id);
    if (answered_order_.size() > 10000) {  // remember the last 10000
      answered_.erase(answered_order_.front());
      answered_order_.pop_front();
    }
    spdlog::info("command {} to {}: {}", command_id, device_id, it->second ? *it->second : "(no reply)");
  }
  if (!it->second) return;
  try {
    client_.publish(topic + "/response", *it->second, 1, false);  // no listener: not telemetry
  } catch (const mqtt::exception& e) {
    spdlog::warn("cannot reply to command {}: {}", command_id, e.what());
  }
}

bool Publisher::Publish(const Message& m) {
  {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [this] { return Stopping() || inflight_ < options_.max_inflight; });
    if (Stopping()) return false;
    ++inflight_;
    report_.Sent();
  }
  try {
    auto msg = mqtt::make_message(m.topic, m.payload, options_.qos, false);
    client_.publish(std::move(msg), PackTag(m), *this);
  } catch (const mqtt::exception& e) {
    std::lock_guard lk(mu_);
    --inflight_;
    report_.Failed();
    if (error_.empty()) error_ = std::string("publish failed: ") + e.what();
    cv_.notify_all();
    return false;
  }
  return true;
}

void Publisher::on_success(const mqtt::token& tok) {
  const Tag t = UnpackTag(tok.get_user_context());
  std::lock_guard lk(mu_);
  report_.Delivered(t.device, t.malformed, t.readings);
  --inflight_;
  cv_.notify_all();
}

void Publisher::on_failure(const mqtt::token& tok) {
  std::lock_guard lk(mu_);
  report_.Failed();
  --inflight_;
  // Log the first few and then every 1000th, so a dead broker does not flood the log.
  if (failures_logged_++ < 10 || failures_logged_ % 1000 == 0) {
    spdlog::warn("delivery failed (return code {}); {} failures so far", tok.get_return_code(), failures_logged_);
  }
  cv_.notify_all();
}

bool Publisher::SleepUntil(std::chrono::steady_clock::time_point when) {
  std::unique_lock lk(mu_);
  return !cv_.wait_until(lk, when, [this] { return Stopping(); });
}

void Publisher::RequestStop() {
  std::lock_guard lk(mu_);
  stop_ = true;
  cv_.notify_all();
}

std::size_t Publisher::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  // A lost connection completes nothing more (no automatic reconnect): do not wait for it.
  cv_.wait_for(lk, timeout, [this] { return inflight_ == 0 || lost_; });
  return inflight_;
}

void Publisher::Disconnect(std::chrono::milliseconds timeout) {
  try {
    if (client_.is_connected()) client_.disconnect(static_cast<int>(timeout.count()))->wait_for(timeout);
  } catch (const mqtt::exception& e) {
    spdlog::warn("disconnect: {}", e.what());
  }
}

std::string Publisher::Error() {
  std::lock_guard lk(mu_);
  return error_;
}

nlohmann::json Publisher::ReportJson(const nlohmann::json& extra) {
  std::lock_guard lk(mu_);
  return report_.ToJson(extra);
}

}  // namespace strata::sim
