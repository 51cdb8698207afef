// Device twins, end to end: real mosquitto, strata-cloud (SQLite), strata-edge, and a device
// played by a Paho client of the test that subscribes to its desired topic and publishes its
// reported properties. Every test follows the twin through the REST API.
#include <signal.h>

#include <mutex>
#include <thread>
#include <vector>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "support/cloud_process.h"
#include "support/edge_process.h"
#include "support/http_client.h"
#include "support/mosquitto.h"

namespace strata::testing {
namespace {

using Json = nlohmann::json;

// One device: what it received on v1/devices/{id}/desired, in order, and what it reports.
class Device {
 public:
  Device(const std::string& url, const std::string& id)
      : id_(id), client_(url, "test-device-" + id + "-" + std::to_string(::getpid())) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) {
      std::lock_guard lock(mu_);
      received_.push_back(Json::parse(m->to_string(), nullptr, false));
    });
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    client_.connect(opts)->wait();
    client_.subscribe("v1/devices/" + id + "/desired", 1)->wait();
  }
  ~Device() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (...) {
    }
  }
  void Report(const std::string& payload) {
    client_.publish("v1/devices/" + id_ + "/reported", payload, 1, false)->wait();
  }
  std::vector<Json> Received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  // The last document received, or null.
  Json Last() {
    std::lock_guard lock(mu_);
    return received_.empty() ? Json() : received_.back();
  }

 private:
  std::string id_;
  mqtt::async_client client_;
  std::mutex mu_;
  std::vector<Json> received_;  // guarded by mu_
};

class TwinsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud_ = std::make_unique<CloudProcess>("sqlite://" + dir_.path() + "/cloud.db", dir_.path());
    ASSERT_EQ(cloud_->Http("POST", "/v1/edges", R"({"edge_id":"gw-test"})").status, 200);
    auto r = cloud_->Http("POST", "/v1/devices", R"({"device_id":"fan-1","edge_id":"gw-test"})");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  void StartEdge() { edge_ = std::make_unique<EdgeProcess>(dir_.path(), broker_.Url(), cloud_->GrpcAddress()); }

  HttpResponse Patch(const Json& body) { return cloud_->Http("PATCH", "/v1/devices/fan-1/twin/desired", body.dump()); }
  Json Twin() {
    auto r = cloud_->Http("GET", "/v1/devices/fan-1/twin");
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body, nullptr, false);
  }
  double EdgeMetric(const std::string& sample) { return edge_->Get(sample); }

  TempDir dir_;
  MosquittoServer broker_;
  std::unique_ptr<CloudProcess> cloud_;
  std::unique_ptr<EdgeProcess> edge_;
};

TEST_F(TwinsE2ETest, TheDeviceGetsItsWholeDesiredDocumentOnEveryChangeAndWhenItSubscribes) {
  StartEdge();
  auto r = Patch({{"desired", {{"rpm", 1200}, {"mode", {{"eco", true}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["desired_version"], "1");
  // A device that subscribes after the change gets the document (retained at the broker).
  Device device(broker_.Url(), "fan-1");
  const Json v1 = {{"version", 1}, {"desired", {{"rpm", 1200}, {"mode", {{"eco", true}}}}}};
  ASSERT_TRUE(WaitFor([&] { return device.Last() == v1; }, std::chrono::seconds(10))) << device.Last().dump();
  // A change: the whole new document, never a delta.
  r = Patch({{"desired", {{"mode", {{"level", 2}}}}}, {"expected_version", "1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json v2 = {{"version", 2}, {"desired", {{"rpm", 1200}, {"mode", {{"eco", true}, {"level", 2}}}}}};
  ASSERT_TRUE(WaitFor([&] { return device.Last() == v2; }, std::chrono::seconds(10))) << device.Last().dump();
  // A stale expected version: 409, and nothing changes.
  r = Patch({{"desired", {{"rpm", 1}}}, {"expected_version", "1"}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("ABORTED"), std::string::npos) << r.body;
  EXPECT_EQ(Twin()["desired_version"], "2");
  // Bad requests: not an object, an unknown device.
  EXPECT_EQ(Patch({{"desired", "fast"}}).status, 400);
  EXPECT_EQ(cloud_->Http("GET", "/v1/devices/nobody/twin").status, 404);
  // After a crash the edge publishes the document again (the broker may have lost it).
  const std::size_t before = device.Received().size();
  edge_->process().Stop(SIGKILL);
  edge_->Start();
  ASSERT_TRUE(WaitFor([&] { return device.Received().size() > before; }, std::chrono::seconds(15)));
  EXPECT_EQ(device.Last(), v2);
  for (const auto& doc : device.Received()) EXPECT_NE(doc["desired"]["rpm"], 1) << doc.dump();
}

TEST_F(TwinsE2ETest, BothDirectionsWaitThroughAnOfflineLinkAndConvergeWhenItIsBack) {
  ASSERT_EQ(Patch({{"desired", {{"rpm", 1200}, {"mode", "eco"}}}}).status, 200);
  StartEdge();
  Device device(broker_.Url(), "fan-1");
  ASSERT_TRUE(WaitFor([&] { return device.Last()["version"] == 1; }, std::chrono::seconds(10)));

  // The cloud is away: reports wait at the edge, merged into one document.
  ASSERT_EQ(cloud_->Stop(), 0);
  device.Report(R"({"rpm":1000,"temp":40})");
  device.Report(R"({"mode":"eco","temp":41})");
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_twin_reported_total{outcome=\"accepted\"}") == 2; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(EdgeMetric("strata_edge_twin_reported_pending"), 1);
  cloud_->Restart();
  const Json reported = {{"rpm", 1000}, {"mode", "eco"}, {"temp", 41}};
  ASSERT_TRUE(WaitFor([&] { return Twin()["reported"] == reported; }, std::chrono::seconds(20))) << Twin().dump();
  Json twin = Twin();
  EXPECT_EQ(twin["reported_version"], "1") << "the two reports went up as one document";
  EXPECT_EQ(twin["difference"], (Json{{"rpm", 1200}}));
  ASSERT_TRUE(WaitFor([&] { return EdgeMetric("strata_edge_twin_reported_pending") == 0; }, std::chrono::seconds(10)));

  // The edge is away: desired changes wait in the cloud and arrive as the latest only.
  ASSERT_EQ(edge_->process().Stop(SIGTERM), 0);
  ASSERT_EQ(Patch({{"desired", {{"rpm", 1300}}}}).status, 200);
  ASSERT_EQ(Patch({{"desired", {{"rpm", 1400}}}}).status, 200);
  edge_->Start();
  ASSERT_TRUE(WaitFor([&] { return device.Last()["version"] == 3; }, std::chrono::seconds(15))) << device.Last().dump();
  EXPECT_EQ(device.Last()["desired"], (Json{{"rpm", 1400}, {"mode", "eco"}}));
  for (const auto& doc : device.Received()) EXPECT_NE(doc["desired"]["rpm"], 1300) << doc.dump();
  // The device catches up: no difference left.
  device.Report(R"({"rpm":1400})");
  ASSERT_TRUE(WaitFor([&] { return Twin()["difference"] == Json::object(); }, std::chrono::seconds(10)))
      << Twin().dump();
  EXPECT_EQ(Twin()["reported_version"], "2");
}

TEST_F(TwinsE2ETest, BadReportsAreRefusedAndCountedAndTheNextOneIsStored) {
  StartEdge();
  Device device(broker_.Url(), "fan-1");
  device.Report("not json");
  device.Report("[1,2,3]");
  device.Report(std::string(10000, '[') + std::string(10000, ']'));  // deep, inside the size limit
  device.Report(Json{{"blob", std::string(40000, 'x')}}.dump());       // above 32 KiB
  ASSERT_TRUE(WaitFor(
      [&] {
        return EdgeMetric("strata_edge_twin_reported_total{outcome=\"malformed\"}") == 3 &&
               EdgeMetric("strata_edge_twin_reported_total{outcome=\"too_large\"}") == 1;
      },
      std::chrono::seconds(10)))
      << edge_->MetricsBody();
  device.Report(R"({"ok":true})");
  ASSERT_TRUE(WaitFor([&] { return Twin()["reported"] == Json{{"ok", true}}; }, std::chrono::seconds(10)))
      << Twin().dump();
  EXPECT_EQ(Twin()["reported_version"], "1");
  EXPECT_EQ(EdgeMetric("strata_edge_twin_reported_total{outcome=\"accepted\"}"), 1);
}


TEST_F(TwinsE2ETest, ANewDevicesFirstReportRegistersItAndIsKept) {
  StartEdge();
  Device device(broker_.Url(), "newbie");
  device.Report(R"({"fw":"1.0"})");
  Json twin;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = cloud_->Http("GET", "/v1/devices/newbie/twin");
        twin = Json::parse(r.body, nullptr, false);
        return r.status == 200 && twin["reported"] == Json{{"fw", "1.0"}};
      },
      std::chrono::seconds(15)))
      << twin.dump();
  EXPECT_EQ(Json::parse(cloud_->Http("GET", "/v1/devices/newbie").body)["edge_id"], "gw-test");
}
}  // namespace
}  // namespace strata::testing
