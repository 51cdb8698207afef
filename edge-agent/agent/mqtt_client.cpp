#include "agent/mqtt_client.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include <MQTTAsync.h>

namespace strata::edge {
namespace {

// One request (connect, subscribe, disconnect) waiting for Paho's onSuccess/onFailure. The
// caller may give up (timeout) before Paho answers, so the callback never touches the caller's
// memory directly: it finds the request by id in a registry, and an id no longer there (the
// caller gave up) is ignored. Ids are never reused.
struct Pending {
  bool done = false;
  bool ok = false;
  int code = 0;
  std::string error;
  bool session_present = false;
  int granted_qos = -1;
  // Connect only: set from the CONNACK on Paho's thread, before it delivers any message of
  // that session (the client's flag outlives the request).
  std::atomic<bool>* session_flag = nullptr;
};

struct Registry {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::uintptr_t, Pending> pending;  // guarded by mu
  std::uintptr_t next_id = 1;                 // guarded by mu
};

// Never destroyed: a Paho thread may still answer while the process exits.
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

template <typename Fill>
void Complete(void* context, Fill fill) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.pending.find(reinterpret_cast<std::uintptr_t>(context));
  if (it == r.pending.end()) return;  // the caller gave up
  fill(it->second);
  it->second.done = true;
  r.cv.notify_all();
}

void OnConnected(void* context, MQTTAsync_successData* data) {
  Complete(context, [data](Pending& p) {
    p.ok = true;
    p.session_present = data != nullptr && data->alt.connect.sessionPresent != 0;
    if (p.session_flag != nullptr) p.session_flag->store(p.session_present);
  });
}

void OnSubscribed(void* context, MQTTAsync_successData* data) {
  Complete(context, [data](Pending& p) {
    p.ok = true;
    if (data != nullptr) p.granted_qos = data->alt.qos;
  });
}

void OnPublished(void* context, MQTTAsync_successData*) {
  Complete(context, [](Pending& p) { p.ok = true; });
}

void OnDisconnected(void* context, MQTTAsync_successData*) {
  Complete(context, [](Pending& p) { p.ok = true; });
}

void OnFailure(void* context, MQTTAsync_failureData* data) {
  Complete(context, [data](Pending& p) {
    p.ok = false;
    if (data != nullptr) {
      p.code = data->code;
      if (data->message != nullptr) p.error = data->message;
    }
  });
}

// Waits for request `id` and removes it from the registry either way.
absl::StatusOr<Pending> Await(std::uintptr_t id, std::chrono::milliseconds timeout, const char* what) {
  Registry& r = registry();
  std::unique_lock lock(r.mu);
  const bool answered = r.cv.wait_for(lock, timeout, [&r, id] { return r.pending.at(id).done; });
  Pending p = std::move(r.pending.at(id));
  r.pending.erase(id);
  if (!answered) return absl::DeadlineExceededError(std::string(what) + " timed out");
  if (!p.ok) {
    return absl::UnavailableError(std::string(what) + " failed: " +
                                  (p.error.empty() ? "code " + std::to_string(p.code) : p.error));
  }
  return p;
}

// Starts one request: `start(context)` hands Paho its options with `context` set and returns
// Paho's code. Returns the id to Await().
template <typename Start>
absl::StatusOr<std::uintptr_t> Issue(const char* what, Start start, std::atomic<bool>* session_flag = nullptr) {
  Registry& r = registry();
  std::uintptr_t id;
  {
    std::lock_guard lock(r.mu);
    id = r.next_id++;
    Pending p;
    p.session_flag = session_flag;
    r.pending.emplace(id, std::move(p));
  }
  if (const int rc = start(reinterpret_cast<void*>(id)); rc != MQTTASYNC_SUCCESS) {
    std::lock_guard lock(r.mu);
    r.pending.erase(id);
    return absl::UnavailableError(std::string(what) + ": " + MQTTAsync_strerror(rc));
  }
  return id;
}

// Issues one request and waits for the answer.
template <typename Start>
absl::StatusOr<Pending> Request(const char* what, std::chrono::milliseconds wait, Start start,
                                std::atomic<bool>* session_flag = nullptr) {
  auto id = Issue(what, std::move(start), session_flag);
  if (!id.ok()) return id.status();
  return Await(*id, wait, what);
}

}  // namespace

MqttClient::MqttClient(const std::string& url, const std::string& client_id, const std::string& persistence_dir,
                       MessageHandler on_message, ConnectionLostHandler on_lost)
    : on_message_(std::move(on_message)), on_lost_(std::move(on_lost)) {
  MQTTAsync handle = nullptr;
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  const int persistence = persistence_dir.empty() ? MQTTCLIENT_PERSISTENCE_NONE : MQTTCLIENT_PERSISTENCE_DEFAULT;
  void* context = persistence_dir.empty() ? nullptr : const_cast<char*>(persistence_dir.c_str());
  int rc = MQTTAsync_createWithOptions(&handle, url.c_str(), client_id.c_str(), persistence, context, &create);
  if (rc != MQTTASYNC_SUCCESS) {
    throw std::runtime_error("mqtt: cannot create a client for " + url + ": " + MQTTAsync_strerror(rc));
  }
  handle_ = handle;
  rc = MQTTAsync_setCallbacks(
      handle, this,
      [](void* self, char* cause) {
        // Paho passes no cause today (NULL) and does not say who would own one: not freed.
        static_cast<MqttClient*>(self)->on_lost_(cause == nullptr ? std::string() : std::string(cause));
      },
      [](void* self, char* topic, int topic_len, MQTTAsync_message* message) -> int {
        const std::string_view t = topic_len > 0 ? std::string_view(topic, topic_len) : std::string_view(topic);
        const std::string_view payload(static_cast<const char*>(message->payload),
                                       static_cast<std::size_t>(message->payloadlen));
        auto* client = static_cast<MqttClient*>(self);
        client->on_message_(t, payload, message->retained != 0,
                            message->retained != 0 && client->session_present_.load());
        MQTTAsync_freeMessage(&message);
        MQTTAsync_free(topic);
        return 1;  // handled: Paho does not deliver it again
      },
      nullptr);
  if (rc != MQTTASYNC_SUCCESS) {
    MQTTAsync_destroy(&handle);
    throw std::runtime_error(std::string("mqtt: cannot set callbacks: ") + MQTTAsync_strerror(rc));
  }
}

MqttClient::~MqttClient() {
  MQTTAsync handle = handle_;
  MQTTAsync_destroy(&handle);
}

absl::StatusOr<bool> MqttClient::Connect(bool clean_session, std::chrono::seconds keep_alive,
                                         std::chrono::milliseconds timeout) {
  MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
  // 3.1.1 only: with the default Paho falls back to 3.1 after a failed attempt, which can
  // connect after this call has given up.
  opts.MQTTVersion = MQTTVERSION_3_1_1;
  opts.cleansession = clean_session ? 1 : 0;
  opts.keepAliveInterval = static_cast<int>(keep_alive.count());
  opts.automaticReconnect = 0;
  opts.connectTimeout = static_cast<int>(std::max<std::int64_t>(1, timeout.count() / 1000));
  opts.onSuccess = OnConnected;
  opts.onFailure = OnFailure;
  // Paho's own connect timeout is `timeout`; wait a little longer so that its answer, not
  // ours, ends the attempt.
  session_present_ = false;
  auto p = Request(
      "connect", timeout + std::chrono::seconds(1),
      [&](void* context) {
        opts.context = context;
        return MQTTAsync_connect(handle_, &opts);
      },
      &session_present_);
  if (!p.ok()) return p.status();
  return p->session_present;
}

absl::Status MqttClient::Subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
  MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
  opts.onSuccess = OnSubscribed;
  opts.onFailure = OnFailure;
  auto p = Request("subscribe", timeout, [&](void* context) {
    opts.context = context;
    return MQTTAsync_subscribe(handle_, filter.c_str(), qos, &opts);
  });
  if (!p.ok()) return p.status();
  if (p->granted_qos == 0x80) return absl::PermissionDeniedError("subscribe to " + filter + " refused by the broker");
  return absl::OkStatus();
}

absl::Status MqttClient::Publish(const std::string& topic, std::string_view payload, int qos, bool retained,
                                 std::chrono::milliseconds timeout) {
  std::vector<std::pair<std::string, std::string>> one{{topic, std::string(payload)}};
  return PublishAll(one, qos, retained, timeout).front();
}

std::vector<absl::Status> MqttClient::PublishAll(const std::vector<std::pair<std::string, std::string>>& messages,
                                                 int qos, bool retained, std::chrono::milliseconds timeout) {
  // Every message is handed to Paho first (Paho copies it), then the acknowledgements are
  // awaited together: one round trip for the lot, not one per message.
  std::vector<absl::StatusOr<std::uintptr_t>> ids;
  ids.reserve(messages.size());
  for (const auto& m : messages) {
    const std::string& topic = m.first;  // named: clang 14 cannot capture a structured binding
    const std::string& payload = m.second;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    opts.onSuccess = OnPublished;
    opts.onFailure = OnFailure;
    MQTTAsync_message message = MQTTAsync_message_initializer;
    message.payload = const_cast<char*>(payload.data());
    message.payloadlen = static_cast<int>(payload.size());
    message.qos = qos;
    message.retained = retained ? 1 : 0;
    ids.push_back(Issue("publish", [&](void* context) {
      opts.context = context;
      return MQTTAsync_sendMessage(handle_, topic.c_str(), &message, &opts);
    }));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<absl::Status> out;
  out.reserve(ids.size());
  for (auto& id : ids) {
    if (!id.ok()) {
      out.push_back(id.status());
      continue;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero()));
    out.push_back(Await(*id, left, "publish").status());
  }
  return out;
}

absl::Status MqttClient::Disconnect(std::chrono::milliseconds timeout) {
  MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
  opts.timeout = static_cast<int>(timeout.count());
  opts.onSuccess = OnDisconnected;
  opts.onFailure = OnFailure;
  return Request("disconnect", timeout + std::chrono::seconds(1), [&](void* context) {
           opts.context = context;
           return MQTTAsync_disconnect(handle_, &opts);
         })
      .status();
}

bool MqttClient::IsConnected() const { return MQTTAsync_isConnected(handle_) != 0; }

}  // namespace strata::edge
