// The edge's MQTT client: a thin synchronous face over Paho C's asynchronous client.
//
// The agent uses Paho C directly (not the C++ wrapper) so that strata-edge can link it
// statically: Debian ships libpaho-mqtt3as.a but no static Paho C++. See docs/architecture.md
// ("One lean binary").
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace strata::edge {

class MqttClient {
 public:
  // Called on Paho's thread. Blocking here holds back the next message (flow control).
  // `retained`: a stored retained message the broker delivered on subscribe (one published
  // while the subscription existed comes without the flag). `replayed`: such a message while
  // the session was resumed. The subscription lived in the session all along, so this client
  // already received that message when it was published (live, or queued while offline).
  using MessageHandler =
      std::function<void(std::string_view topic, std::string_view payload, bool retained, bool replayed)>;
  using ConnectionLostHandler = std::function<void(const std::string& cause)>;

  // persistence_dir empty: no persistence; else Paho's file persistence in that directory.
  MqttClient(const std::string& url, const std::string& client_id, const std::string& persistence_dir,
             MessageHandler on_message, ConnectionLostHandler on_lost);
  // MQTTAsync_destroy: stops Paho's threads, waiting (Paho caps the wait at about 10 s) for a
  // callback that is running. Disconnect first so that no new message callback starts.
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Connects with MQTT 3.1.1 (no automatic reconnect); returns whether the broker still had
  // our session. A connect that ends in an error may still have connected late: callers
  // check IsConnected() and Disconnect() before trying again.
  absl::StatusOr<bool> Connect(bool clean_session, std::chrono::seconds keep_alive, std::chrono::milliseconds timeout);
  absl::Status Subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout);
  // Publishes and waits for the broker's acknowledgement (PUBACK at QoS 1; at QoS 0, for the
  // message to be written to the socket). DEADLINE_EXCEEDED when none came in time: Paho may
  // still send the message (with persistence, also after a restart).
  absl::Status Publish(const std::string& topic, std::string_view payload, int qos, bool retained,
                       std::chrono::milliseconds timeout);
  // Publishes every (topic, payload) at once and then waits, up to `timeout` in all, for each
  // acknowledgement; one status per message, in order.
  std::vector<absl::Status> PublishAll(const std::vector<std::pair<std::string, std::string>>& messages, int qos,
                                       bool retained, std::chrono::milliseconds timeout);
  absl::Status Disconnect(std::chrono::milliseconds timeout);
  bool IsConnected() const;

 private:
  void* handle_ = nullptr;  // MQTTAsync
  std::atomic<bool> session_present_{false};  // of the current connection (set on Paho's thread)
  MessageHandler on_message_;
  ConnectionLostHandler on_lost_;
};

}  // namespace strata::edge
