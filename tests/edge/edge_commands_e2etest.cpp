// Commands, end to end: real mosquitto, strata-cloud (SQLite), strata-edge, and devices played
// by a Paho client of the test that subscribes to v1/devices/+/commands/+ and answers (or not)
// as each test tells it. Every test follows its commands through the REST API and counts
// what each device received.
#include <signal.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "support/cloud_process.h"
#include "support/edge_process.h"
#include "support/http_client.h"
#include "support/metrics_text.h"
#include "support/mosquitto.h"

namespace strata::testing {
namespace {

using Json = nlohmann::json;

// The devices: receives every command, records it, and answers with what `policy` returns
// (the reply payload, and how long to wait before sending it), or not at all.
class Devices {
 public:
  struct Reply {
    std::string payload;
    std::chrono::milliseconds delay{0};
  };
  using Policy = std::function<std::optional<Reply>(const std::string& device, const Json& command)>;

  Devices(const std::string& url, Policy policy)
      : client_(url, "test-devices-" + std::to_string(::getpid()), mqtt::create_options(MQTTVERSION_DEFAULT, 2001)),
        policy_(std::move(policy)) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) { OnMessage(m->get_topic(), m->to_string()); });
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    opts.set_max_inflight(2000);
    client_.connect(opts)->wait();
    client_.subscribe("v1/devices/+/commands/+", 1)->wait();
  }
  ~Devices() {
    for (auto& t : repliers_) t.join();
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (...) {
    }
  }

  // Makes the devices present at the edge (anything they send counts).
  void Telemetry(const std::vector<std::string>& devices) {
    std::vector<mqtt::delivery_token_ptr> tokens;
    for (const auto& d : devices) {
      tokens.push_back(client_.publish("v1/devices/" + d + "/telemetry", R"({"values":{"up":1}})", 1, false));
    }
    for (auto& t : tokens) t->wait();
  }
  void SendReply(const std::string& device, const std::string& command_id, const std::string& payload) {
    client_.publish("v1/devices/" + device + "/commands/" + command_id + "/response", payload, 1, false)->wait();
  }

  // Times each command id was received, and the last payload of each.
  std::map<std::string, int> Received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  Json Payload(const std::string& command_id) {
    std::lock_guard lock(mu_);
    return payloads_.count(command_id) ? payloads_[command_id] : Json();
  }
  std::string TopicOf(const std::string& command_id) {
    std::lock_guard lock(mu_);
    return topics_[command_id];
  }

 private:
  void OnMessage(const std::string& topic, const std::string& payload) {
    // v1/devices/{device}/commands/{id}
    const auto device = topic.substr(11, topic.find('/', 11) - 11);
    const auto id = topic.substr(topic.rfind('/') + 1);
    Json command = Json::parse(payload, nullptr, false);
    std::optional<Reply> reply;
    {
      std::lock_guard lock(mu_);
      ++received_[id];
      payloads_[id] = command;
      topics_[id] = topic;
      reply = policy_(device, command);
    }
    if (!reply) return;
    if (reply->delay.count() == 0) {
      client_.publish(topic + "/response", reply->payload, 1, false);
      return;
    }
    std::lock_guard lock(mu_);
    repliers_.emplace_back([this, topic, reply] {
      std::this_thread::sleep_for(reply->delay);
      client_.publish(topic + "/response", reply->payload, 1, false);
    });
  }

  mqtt::async_client client_;
  Policy policy_;
  std::mutex mu_;
  std::map<std::string, int> received_;  // guarded by mu_
  std::map<std::string, Json> payloads_;  // guarded by mu_
  std::map<std::string, std::string> topics_;  // guarded by mu_
  std::vector<std::thread> repliers_;    // guarded by mu_
};

std::optional<Devices::Reply> Succeed(const std::string& device, const Json& command) {
  return Devices::Reply{Json{{"status", "SUCCEEDED"}, {"result", {{"device", device}, {"params", command["params"]}}}}
                            .dump()};
}
std::optional<Devices::Reply> Silent(const std::string&, const Json&) { return std::nullopt; }

std::int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class CommandsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud_ = std::make_unique<CloudProcess>("sqlite://" + dir_.path() + "/cloud.db", dir_.path());
    ASSERT_EQ(cloud_->Http("POST", "/v1/edges", R"({"edge_id":"gw-test"})").status, 200);
  }

  void AddDevices(const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
      auto r = cloud_->Http("POST", "/v1/devices", Json{{"device_id", id}, {"edge_id", "gw-test"}}.dump());
      ASSERT_EQ(r.status, 200) << r.body;
    }
  }
  void StartEdge() { edge_ = std::make_unique<EdgeProcess>(dir_.path(), broker_.Url(), cloud_->GrpcAddress()); }

  // POST /v1/devices/{device}/commands; returns the command (with its command_id).
  Json Send(const std::string& device, Json body) {
    if (!body.contains("name")) body["name"] = "set_speed";
    auto r = cloud_->Http("POST", "/v1/devices/" + device + "/commands", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body, nullptr, false);
  }
  Json Get(const std::string& id) {
    auto r = cloud_->Http("GET", "/v1/commands/" + id);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body, nullptr, false);
  }
  bool WaitState(const std::string& id, const std::string& state,
                 std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    return WaitFor([&] { return Get(id)["state"] == "COMMAND_STATE_" + state; }, timeout);
  }
  std::vector<std::string> History(const std::string& id) {
    std::vector<std::string> out;
    const Json c = Get(id);
    for (const auto& h : c["history"]) out.push_back(h["state"].get<std::string>().substr(14));
    return out;
  }
  double EdgeMetric(const std::string& sample) { return edge_->Get(sample); }
  Json EdgeStatus() {
    return Json::parse(HttpRequest("GET", "127.0.0.1", edge_->HttpPort(), "/status").body, nullptr, false);
  }
  double CloudMetric(const std::string& sample) { return MetricSample(cloud_->Http("GET", "/metrics").body, sample); }

  TempDir dir_;
  MosquittoServer broker_;
  std::unique_ptr<CloudProcess> cloud_;
  std::unique_ptr<EdgeProcess> edge_;
};

TEST_F(CommandsE2ETest, ACommandSentWhileTheEdgeIsOfflineIsDeliveredOnceWhenItReturns) {
  AddDevices({"pump-1"});
  Devices devices(broker_.Url(), Succeed);
  const Json sent = Send("pump-1", {{"params", {{"rpm", 1200}, {"mode", "eco"}}}, {"idempotency_key", "k-1"}});
  const std::string id = sent["command_id"];
  EXPECT_EQ(sent["state"], "COMMAND_STATE_QUEUED");
  EXPECT_EQ(sent["edge_id"], "gw-test");
  // The same key again: the same command, nothing new queued.
  EXPECT_EQ(Send("pump-1", {{"idempotency_key", "k-1"}})["command_id"], id);

  StartEdge();
  devices.Telemetry({"pump-1"});
  ASSERT_TRUE(WaitState(id, "SUCCEEDED")) << Get(id).dump();
  const Json c = Get(id);
  EXPECT_EQ(c["result"]["device"], "pump-1");
  EXPECT_EQ(c["result"]["params"]["rpm"], 1200);
  EXPECT_EQ(History(id), (std::vector<std::string>{"QUEUED", "SENT", "DELIVERED", "SUCCEEDED"}));
  // The device-side contract: topic and payload.
  EXPECT_EQ(devices.TopicOf(id), "v1/devices/pump-1/commands/" + id);
  const Json payload = devices.Payload(id);
  EXPECT_EQ(payload["command_id"], id);
  EXPECT_EQ(payload["name"], "set_speed");
  EXPECT_EQ(payload["params"]["mode"], "eco");
  EXPECT_EQ(payload["expires_at"], std::stoll(c["expires_at"].get<std::string>()));
  EXPECT_EQ(devices.Received(), (std::map<std::string, int>{{id, 1}}));
  // Every report was recorded by the cloud, and the edge forgot it.
  EXPECT_TRUE(WaitFor([&] { return EdgeStatus()["commands"]["reports_pending"] == 0; }, std::chrono::seconds(5)))
      << EdgeStatus().dump();
  EXPECT_EQ(EdgeStatus()["commands"]["by_state"]["succeeded"], 1);
}

TEST_F(CommandsE2ETest, AnEdgeKilledBetweenSentAndDeliveredDeliversOnceAfterItsRestart) {
  AddDevices({"valve-1"});
  StartEdge();
  Devices devices(broker_.Url(), Succeed);  // subscribed, but silent: not present at the edge
  const std::string id = Send("valve-1", {{"name", "close"}})["command_id"];
  ASSERT_TRUE(WaitState(id, "SENT"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(devices.Received().empty()) << "a device that was never heard from is not published to";

  edge_->process().Stop(SIGKILL);
  edge_->Start();
  devices.Telemetry({"valve-1"});
  ASSERT_TRUE(WaitState(id, "SUCCEEDED")) << Get(id).dump();
  EXPECT_EQ(devices.Received(), (std::map<std::string, int>{{id, 1}}));
  EXPECT_EQ(History(id), (std::vector<std::string>{"QUEUED", "SENT", "DELIVERED", "SUCCEEDED"}));
}

TEST_F(CommandsE2ETest, AReplyAfterTheTimeoutLeavesTheCommandTimedOutAndIsCounted) {
  AddDevices({"fan-1"});
  StartEdge();
  Devices devices(broker_.Url(), [](const std::string& d, const Json& c) {
    auto r = Succeed(d, c);
    r->delay = std::chrono::milliseconds(1500);
    return r;
  });
  devices.Telemetry({"fan-1"});
  const std::string id = Send("fan-1", {{"timeout_ms", 500}})["command_id"];
  ASSERT_TRUE(WaitState(id, "TIMED_OUT")) << Get(id).dump();
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_command_messages_rejected_total{reason=\"late\"}") == 1; },
                      std::chrono::seconds(10)));
  const Json c = Get(id);
  EXPECT_EQ(c["state"], "COMMAND_STATE_TIMED_OUT");
  EXPECT_EQ(c["error"], "no reply within timeout_ms");
  EXPECT_EQ(History(id), (std::vector<std::string>{"QUEUED", "SENT", "DELIVERED", "TIMED_OUT"}));
}

TEST_F(CommandsE2ETest, ACommandThatExpiresBeforeDeliveryIsNeverPublished) {
  AddDevices({"lamp-1", "lamp-2"});
  Devices devices(broker_.Url(), Succeed);
  // In the cloud: the edge is away until after the expiry.
  const std::string in_cloud = Send("lamp-1", {{"expires_at", Now() + 1000}})["command_id"];
  ASSERT_TRUE(WaitState(in_cloud, "EXPIRED")) << Get(in_cloud).dump();
  StartEdge();
  // On the edge: it holds the command, but the device is away until after the expiry.
  const std::string on_edge = Send("lamp-2", {{"expires_at", Now() + 1500}})["command_id"];
  ASSERT_TRUE(WaitState(on_edge, "SENT"));
  ASSERT_TRUE(WaitState(on_edge, "EXPIRED")) << Get(on_edge).dump();
  devices.Telemetry({"lamp-1", "lamp-2"});
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_TRUE(devices.Received().empty());
  EXPECT_EQ(History(in_cloud), (std::vector<std::string>{"QUEUED", "EXPIRED"}));
  EXPECT_EQ(History(on_edge), (std::vector<std::string>{"QUEUED", "SENT", "EXPIRED"}));
  EXPECT_EQ(Get(on_edge)["error"], "not delivered before expires_at");
}

TEST_F(CommandsE2ETest, CancelWorksInEveryStateBeforeTheEndAndTheDeviceGetsNothingAfterIt) {
  AddDevices({"door-1", "door-2", "door-3"});
  Devices devices(broker_.Url(), Silent);
  // QUEUED: the edge is offline.
  const std::string queued = Send("door-1", {})["command_id"];
  auto r = cloud_->Http("POST", "/v1/commands/" + queued + ":cancel", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["state"], "COMMAND_STATE_CANCELLED");
  StartEdge();
  // SENT: the device is away.
  const std::string sent = Send("door-2", {})["command_id"];
  ASSERT_TRUE(WaitState(sent, "SENT"));
  ASSERT_EQ(cloud_->Http("POST", "/v1/commands/" + sent + ":cancel", "{}").status, 200);
  // DELIVERED: the device got it and has not answered.
  devices.Telemetry({"door-3"});
  const std::string delivered = Send("door-3", {})["command_id"];
  ASSERT_TRUE(WaitState(delivered, "DELIVERED"));
  ASSERT_EQ(cloud_->Http("POST", "/v1/commands/" + delivered + ":cancel", "{}").status, 200);
  // The edge answers each cancellation; the cloud stops telling it.
  ASSERT_TRUE(WaitFor([&] { return CloudMetric("strata_cloud_edge_command_cancels_sent_total") >= 3; },
                      std::chrono::seconds(10)));
  ASSERT_TRUE(WaitFor(
      [&] {
        return EdgeMetric("strata_edge_command_transitions_total{state=\"cancelled\"}") >= 3 &&
               CloudMetric("strata_cloud_edge_command_updates_total{result=\"recorded\"}") +
                       CloudMetric("strata_cloud_edge_command_updates_total{result=\"duplicate\"}") >=
                   6;  // SENT x2, DELIVERED, and 3 CANCELLED
      },
      std::chrono::seconds(10)));
  // The device that got it replies anyway: the reply is refused at the edge, the command stays.
  devices.SendReply("door-3", delivered, R"({"status":"SUCCEEDED","result":1})");
  devices.Telemetry({"door-1", "door-2"});
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_command_messages_rejected_total{reason=\"ended\"}") == 1; },
                      std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(devices.Received(), (std::map<std::string, int>{{delivered, 1}}));
  for (const auto& id : {queued, sent, delivered}) EXPECT_EQ(Get(id)["state"], "COMMAND_STATE_CANCELLED") << id;
  // A command that has ended cannot be cancelled.
  r = cloud_->Http("POST", "/v1/commands/" + queued + ":cancel", "{}");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("FAILED_PRECONDITION"), std::string::npos) << r.body;
}

TEST_F(CommandsE2ETest, AThousandCommandsAcrossAHundredDevicesEachEndOnce) {
  constexpr int kDevices = 100, kPerDevice = 10;
  std::vector<std::string> ids;
  for (int i = 0; i < kDevices; ++i) ids.push_back("node-" + std::to_string(i));
  AddDevices(ids);
  StartEdge();
  // Every third device fails what it is asked; the rest succeed.
  Devices devices(broker_.Url(), [](const std::string& d, const Json& c) -> std::optional<Devices::Reply> {
    if (std::stoi(d.substr(5)) % 3 == 0) return Devices::Reply{R"({"status":"FAILED","result":{"code":7}})"};
    return Succeed(d, c);
  });
  devices.Telemetry(ids);
  std::map<std::string, std::string> expected;  // command -> final state
  for (int round = 0; round < kPerDevice; ++round) {
    for (int d = 0; d < kDevices; ++d) {
      const std::string id = Send(ids[d], {{"params", {{"round", round}}}})["command_id"];
      expected[id] = d % 3 == 0 ? "COMMAND_STATE_FAILED" : "COMMAND_STATE_SUCCEEDED";
    }
  }
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(kDevices * kPerDevice));
  // Follow them through the list API, page by page.
  auto final_states = [&] {
    std::map<std::string, std::string> got;
    for (const auto& device : ids) {
      std::string token;
      do {
        auto r = cloud_->Http("GET", "/v1/devices/" + device + "/commands?page_size=4" +
                                         (token.empty() ? "" : "&page_token=" + UrlEncode(token)));
        EXPECT_EQ(r.status, 200) << r.body;
        Json page = Json::parse(r.body, nullptr, false);
        for (const auto& c : page["commands"]) got[c["command_id"]] = c["state"];
        token = page.value("next_page_token", "");
      } while (!token.empty());
    }
    return got;
  };
  ASSERT_TRUE(WaitFor([&] { return final_states() == expected; }, std::chrono::seconds(60)));
  auto received = devices.Received();
  EXPECT_EQ(received.size(), expected.size());
  int twice = 0;
  for (const auto& [id, n] : received) twice += n != 1;
  EXPECT_EQ(twice, 0) << "commands received more than once";
  EXPECT_EQ(EdgeMetric("strata_edge_command_transitions_total{state=\"delivered\"}"), kDevices * kPerDevice);
}


TEST_F(CommandsE2ETest, ADeviceThatIsAwayWithMoreCommandsThanAPassTakesHoldsBackNobodyElse) {
  AddDevices({"away-1", "fan-1"});
  StartEdge();
  Devices devices(broker_.Url(), Succeed);
  // More commands than one delivery pass publishes (1,000), all older than fan-1's, for a
  // device that has not been heard from.
  std::vector<std::string> away;
  for (int i = 0; i < 1005; ++i) away.push_back(Send("away-1", {{"params", {{"i", i}}}})["command_id"]);
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_commands_open{state=\"sent\"}") == 1005; },
                      std::chrono::seconds(30)));
  devices.Telemetry({"fan-1"});
  const std::string id = Send("fan-1", {})["command_id"];
  ASSERT_TRUE(WaitState(id, "SUCCEEDED", std::chrono::seconds(10))) << Get(id).dump();
  EXPECT_EQ(Get(away.front())["state"], "COMMAND_STATE_SENT");
  // When it comes back, all of it goes, once each.
  devices.Telemetry({"away-1"});
  ASSERT_TRUE(WaitFor([&] { return devices.Received().size() == away.size() + 1; }, std::chrono::seconds(30)));
  ASSERT_TRUE(WaitState(away.back(), "SUCCEEDED"));
  int twice = 0;
  for (const auto& [cid, n] : devices.Received()) twice += n != 1;
  EXPECT_EQ(twice, 0);
}

TEST_F(CommandsE2ETest, HostileRepliesAreRejectedAndCountedAndTheNextGoodReplyEndsTheCommand) {
  AddDevices({"fan-1"});
  StartEdge();
  Devices devices(broker_.Url(), Silent);
  devices.Telemetry({"fan-1"});
  const std::string id = Send("fan-1", {{"timeout_ms", 60000}})["command_id"];
  ASSERT_TRUE(WaitState(id, "DELIVERED")) << Get(id).dump();
  // Nested 30,000 deep (inside the size limit; a recursive parser would overflow its stack), not JSON, the wrong
  // status, and larger than the reply limit.
  devices.SendReply("fan-1", id, std::string(30000, '[') + std::string(30000, ']'));
  devices.SendReply("fan-1", id, "not json");
  devices.SendReply("fan-1", id, R"({"status":"MAYBE"})");
  devices.SendReply("fan-1", id, R"({"status":"SUCCEEDED","result":")" + std::string(200000, 'x') + "\"}");
  ASSERT_TRUE(WaitFor(
      [&] {
        return EdgeMetric("strata_edge_command_messages_rejected_total{reason=\"malformed\"}") == 3 &&
               EdgeMetric("strata_edge_command_messages_rejected_total{reason=\"too_large\"}") == 1;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(Get(id)["state"], "COMMAND_STATE_DELIVERED");
  devices.SendReply("fan-1", id, R"({"status":"SUCCEEDED","result":{"ok":true}})");
  ASSERT_TRUE(WaitState(id, "SUCCEEDED")) << Get(id).dump();
  EXPECT_EQ(Get(id)["result"], (Json{{"ok", true}}));
}

TEST_F(CommandsE2ETest, ParamsAreMeasuredAsTheJsonTheEdgeGets) {
  AddDevices({"fan-1"});
  // 20,000 control characters: 20 KB as protobuf, 120 KB as the JSON the edge would get.
  Json body = {{"name", "set_speed"}, {"params", {{"blob", std::string(20000, '\x01')}}}};
  auto r = cloud_->Http("POST", "/v1/devices/fan-1/commands", body.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("as JSON"), std::string::npos) << r.body;
  body["params"]["blob"] = std::string(60000, 'a');  // inside the limit
  r = cloud_->Http("POST", "/v1/devices/fan-1/commands", body.dump());
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(CommandsE2ETest, ACommandRefusedByAFullOutboxIsOfferedAgainAndGoesOnceThereIsRoom) {
  AddDevices({"fan-1"});
  edge_ = std::make_unique<EdgeProcess>(dir_.path(), broker_.Url(), cloud_->GrpcAddress(),
                                        std::vector<std::string>{"--command-max-open", "1"});
  Devices devices(broker_.Url(), Silent);
  devices.Telemetry({"fan-1"});
  const std::string first = Send("fan-1", {{"timeout_ms", 2000}})["command_id"];
  ASSERT_TRUE(WaitState(first, "DELIVERED"));
  const std::string second = Send("fan-1", {})["command_id"];
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_command_messages_rejected_total{reason=\"outbox_full\"}") >= 1; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(Get(second)["state"], "COMMAND_STATE_QUEUED");
  // The first times out and makes room; the cloud offers the second again (30 s after it
  // first sent it), on the same stream.
  ASSERT_TRUE(WaitState(first, "TIMED_OUT"));
  ASSERT_TRUE(WaitState(second, "DELIVERED", std::chrono::seconds(45))) << Get(second).dump();
  EXPECT_EQ(devices.Received().at(second), 1);
}
}  // namespace
}  // namespace strata::testing
