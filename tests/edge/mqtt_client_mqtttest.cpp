// The agent's MQTT client (Paho C behind a synchronous face) against a real mosquitto.
#include "agent/mqtt_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <mqtt/async_client.h>

#include "support/mosquitto.h"
#include "support/process.h"

namespace strata::edge {
namespace {

using namespace std::chrono_literals;
using strata::testing::MosquittoServer;
using strata::testing::WaitFor;

// What the client hands to its callbacks, collected for assertions.
struct Inbox {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> messages;
  std::atomic<int> lost{0};

  MqttClient::MessageHandler OnMessage() {
    return [this](std::string_view topic, std::string_view payload, bool, bool) {
      std::lock_guard lock(mu);
      messages.emplace_back(std::string(topic), std::string(payload));
    };
  }
  MqttClient::ConnectionLostHandler OnLost() {
    return [this](const std::string&) { ++lost; };
  }
  std::size_t Size() {
    std::lock_guard lock(mu);
    return messages.size();
  }
};

void Publish(const std::string& url, const std::vector<std::pair<std::string, std::string>>& messages) {
  mqtt::async_client pub(url, "mqtt-client-test-pub");
  pub.connect()->wait();
  for (const auto& [topic, payload] : messages) pub.publish(topic, payload, 1, false)->wait();
  pub.disconnect()->wait();
}

TEST(MqttClient, NewSessionSubscribesAndReceivesInOrder) {
  MosquittoServer broker;
  Inbox inbox;
  MqttClient client(broker.Url(), "edge-new", "", inbox.OnMessage(), inbox.OnLost());
  auto session = client.Connect(true, 20s, 5s);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_FALSE(*session);  // a clean session is never resumed
  EXPECT_TRUE(client.IsConnected());
  ASSERT_TRUE(client.Subscribe("v1/devices/+/telemetry", 1, 5s).ok());

  // Payloads are bytes, not C strings: an embedded NUL must arrive intact.
  const std::vector<std::pair<std::string, std::string>> sent = {
      {"v1/devices/a/telemetry", R"({"t":1})"},
      {"v1/devices/b/telemetry", std::string("bin\0ary", 7)},
      {"v1/devices/a/telemetry", ""},
  };
  Publish(broker.Url(), sent);
  ASSERT_TRUE(WaitFor([&] { return inbox.Size() == sent.size(); }, 10s)) << inbox.Size();
  std::lock_guard lock(inbox.mu);
  EXPECT_EQ(inbox.messages, sent);
  EXPECT_EQ(inbox.lost.load(), 0);
}

TEST(MqttClient, PersistentSessionKeepsQos1MessagesWhileAway) {
  MosquittoServer broker;
  strata::testing::TempDir dir;
  {
    Inbox inbox;
    MqttClient client(broker.Url(), "edge-persistent", dir.path() + "/paho", inbox.OnMessage(), inbox.OnLost());
    auto session = client.Connect(false, 20s, 5s);
    ASSERT_TRUE(session.ok()) << session.status();
    EXPECT_FALSE(*session);
    ASSERT_TRUE(client.Subscribe("v1/devices/+/telemetry", 1, 5s).ok());
    ASSERT_TRUE(client.Disconnect(2s).ok());
    EXPECT_FALSE(client.IsConnected());
  }
  Publish(broker.Url(), {{"v1/devices/x/telemetry", "1"}, {"v1/devices/x/telemetry", "2"}});

  Inbox inbox;
  MqttClient client(broker.Url(), "edge-persistent", dir.path() + "/paho", inbox.OnMessage(), inbox.OnLost());
  auto session = client.Connect(false, 20s, 5s);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_TRUE(*session);  // the broker kept the session and its queued messages; no new subscribe
  ASSERT_TRUE(WaitFor([&] { return inbox.Size() == 2; }, 10s)) << inbox.Size();
  std::lock_guard lock(inbox.mu);
  EXPECT_EQ(inbox.messages[0].second, "1");
  EXPECT_EQ(inbox.messages[1].second, "2");
}

TEST(MqttClient, RefusedConnectionIsAnErrorNotAWait) {
  // A bound socket that never listens: connecting to its port is refused, and nothing else
  // can take the port while the test holds it.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  Inbox inbox;
  MqttClient client("tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), "edge-nobroker", "",
                    inbox.OnMessage(), inbox.OnLost());
  const auto start = std::chrono::steady_clock::now();
  auto session = client.Connect(false, 20s, 5s);
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_FALSE(session.ok());
  EXPECT_TRUE(absl::IsUnavailable(session.status())) << session.status();  // Paho's answer, not our timeout
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(client.IsConnected());
}

TEST(MqttClient, BadUrlIsRejectedAtCreation) {
  Inbox inbox;
  EXPECT_THROW(MqttClient("nonsense://127.0.0.1:1", "edge-badurl", "", inbox.OnMessage(), inbox.OnLost()),
               std::runtime_error);
}

TEST(MqttClient, BrokerStopIsReportedAndTheClientConnectsAgain) {
  MosquittoServer broker;
  Inbox inbox;
  MqttClient client(broker.Url(), "edge-lost", "", inbox.OnMessage(), inbox.OnLost());
  ASSERT_TRUE(client.Connect(false, 20s, 5s).ok());
  ASSERT_TRUE(client.Subscribe("v1/devices/+/telemetry", 1, 5s).ok());

  broker.Stop();
  ASSERT_TRUE(WaitFor([&] { return inbox.lost.load() == 1; }, 10s));
  EXPECT_FALSE(client.IsConnected());
  EXPECT_FALSE(client.Connect(false, 20s, 2s).ok());

  broker.Start();
  auto session = client.Connect(false, 20s, 5s);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_TRUE(*session);  // mosquitto saved the persistent session on SIGTERM
  Publish(broker.Url(), {{"v1/devices/y/telemetry", "after"}});
  ASSERT_TRUE(WaitFor([&] { return inbox.Size() == 1; }, 10s));
}

}  // namespace
}  // namespace strata::edge
