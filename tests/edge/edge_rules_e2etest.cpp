// Edge rules, end to end: real mosquitto (readings published with mosquitto_pub, a client
// that is not ours), strata-cloud (SQLite) and strata-edge. An EDGE rule created through the
// REST API reaches the edge in its config revision; the edge raises and clears alarms with
// the cloud away, and they reach the cloud once; a kill -9 in the middle of a DURATION fires
// at the same timestamp; the same stream through an EDGE and a CLOUD rule gives the same
// transitions at the same timestamps; a cloud ack during a partition and an edge clear meanwhile
// converge.
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/cloud_process.h"
#include "support/edge_process.h"
#include "support/metrics_text.h"
#include "support/mosquitto.h"

namespace strata::testing {
namespace {

using nlohmann::json;

constexpr std::int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z

// "Spindle temperature above 85 for 30 s raises MAJOR; above 95 CRITICAL; below 80 clears."
json Overheat(const std::string& id, const std::string& location, const std::string& alarm_type) {
  return {{"rule_id", id},
          {"alarm_type", alarm_type},
          {"location", location},
          {"device_type", "spindle"},
          {"raise",
           {{{"severity", "MAJOR"}, {"condition", "temperature > 85.0"}},
            {{"severity", "CRITICAL"}, {"condition", "temperature > 95.0"}}}},
          {"clear", "temperature < 80.0"},
          {"for_ms", "30000"}};
}

// Readings of `value` every 2 s from from_ms to to_ms.
std::vector<std::pair<std::int64_t, double>> Series(std::int64_t from_ms, std::int64_t to_ms, double value) {
  std::vector<std::pair<std::int64_t, double>> out;
  for (std::int64_t ms = from_ms; ms <= to_ms; ms += 2000) out.emplace_back(ms, value);
  return out;
}

class EdgeRulesE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud_ = std::make_unique<CloudProcess>("sqlite://" + dir_.path() + "/cloud.db", dir_.path());
    Call("POST", "/v1/edges", R"({"edge_id":"gw-test"})", 200);
    Call("POST", "/v1/devices", R"({"device_id":"spindle-1","type":"spindle","edge_id":"gw-test"})", 200);
  }
  json Call(const std::string& method, const std::string& target, const std::string& body, int want) {
    auto r = cloud_->Http(method, target, body);
    EXPECT_EQ(r.status, want) << method << " " << target << " " << body << " -> " << r.body;
    return cloud_->Json(r);
  }
  void StartEdge(const std::string& cloud) {
    edge_ = std::make_unique<EdgeProcess>(dir_.path(), broker_.Url(), cloud);
  }
  // Until the edge runs `n` rules (its config revision brought them).
  bool WaitForEdgeRules(double n) {
    return WaitFor([&] { return edge_->Get("strata_edge_rules") == n; }, std::chrono::seconds(15));
  }
  // Publishes temperature readings of spindle-1 at kT0 + each ms, in order, with mosquitto_pub.
  void Publish(const std::vector<std::pair<std::int64_t, double>>& at) {
    const std::string file = dir_.path() + "/pub.txt";
    {
      std::ofstream out(file, std::ios::trunc);
      for (const auto& [ms, t] : at) out << json{{"ts", kT0 + ms}, {"values", {{"temperature", t}}}}.dump() << "\n";
    }
    const std::string cmd = "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_.Port()) +
                            " -q 1 -t v1/devices/spindle-1/telemetry -l < " + file;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  double Evaluations() { return edge_->Get("strata_edge_rule_evaluations_total"); }
  json Alarms(const std::string& type) {
    return Call("GET", "/v1/alarms?device_id=spindle-1&type=" + type, "", 200)["alarms"];
  }
  // An edge with the EDGE rule "overheat" that has raised its alarm in the cloud (90 from 0 s
  // to 40 s: MAJOR at 30 s); the alarm's id, or empty.
  std::string RaiseOverheatAtTheEdge() {
    StartEdge(cloud_->GrpcAddress());
    Call("POST", "/v1/rules", Overheat("overheat", "EDGE", "spindle_overheat").dump(), 200);
    if (!WaitForEdgeRules(1)) return "";
    Publish(Series(0, 40000, 90.0));
    json alarms;
    if (!WaitForAlarms("spindle_overheat", alarms)) return "";
    return alarms[0]["alarm_id"];
  }
  // Until there is an alarm of `type`; `alarms` are the device's of that type, newest first.
  bool WaitForAlarms(const std::string& type, json& alarms) {
    return WaitFor(
        [&] {
          alarms = Alarms(type);
          return !alarms.empty();
        },
        std::chrono::seconds(20));
  }
  // The alarm's history as (kind, severity, at) triples.
  std::vector<std::string> History(const std::string& alarm_id) {
    std::vector<std::string> out;
    const json alarm = Call("GET", "/v1/alarms/" + alarm_id, "", 200);
    for (const auto& e : alarm["history"]) {
      out.push_back(e.value("kind", "") + " " + e.value("severity", "") + " " + e.value("at", "0"));
    }
    return out;
  }

  TempDir dir_;
  MosquittoServer broker_;
  std::unique_ptr<CloudProcess> cloud_;
  std::unique_ptr<EdgeProcess> edge_;
};

TEST_F(EdgeRulesE2ETest, RaisedAndClearedWithTheCloudAwayTheAlarmReachesTheCloudOnce) {
  StartEdge(cloud_->GrpcAddress());
  Call("POST", "/v1/rules", Overheat("overheat", "EDGE", "spindle_overheat").dump(), 200);
  ASSERT_TRUE(WaitForEdgeRules(1)) << "the rule travels in the edge's config revision";
  ASSERT_EQ(cloud_->Stop(), 0);
  // 90 from 0 s to 40 s (MAJOR at 30 s), then 70 at 42 s (cleared): all at the edge, offline.
  auto readings = Series(0, 40000, 90.0);
  readings.emplace_back(42000, 70.0);
  Publish(readings);
  ASSERT_TRUE(WaitFor([&] { return edge_->Get("strata_edge_rule_transitions_total") == 2; }, std::chrono::seconds(15)))
      << "raised and cleared at the edge with the cloud away";
  EXPECT_EQ(edge_->Get("strata_edge_rule_alarms_pending"), 2);
  cloud_->Restart();
  json alarms;
  ASSERT_TRUE(WaitFor(
      [&] {
        alarms = Alarms("spindle_overheat");
        return alarms.size() == 1 && alarms[0]["status"] == "ALARM_STATUS_CLEARED_UNACK";
      },
      std::chrono::seconds(20)))
      << alarms.dump();
  EXPECT_EQ(alarms[0]["start_ts"], std::to_string(kT0 + 30000));
  EXPECT_EQ(alarms[0]["end_ts"], std::to_string(kT0 + 42000));
  EXPECT_EQ(alarms[0]["rule_id"], "overheat");
  EXPECT_EQ(alarms[0]["severity"], "ALARM_SEVERITY_MAJOR");
  const std::string id = alarms[0]["alarm_id"];
  const std::vector<std::string> want = {"RAISED ALARM_SEVERITY_MAJOR " + std::to_string(kT0 + 30000),
                                         "CLEARED ALARM_SEVERITY_MAJOR " + std::to_string(kT0 + 42000)};
  EXPECT_EQ(History(id), want);
  EXPECT_EQ(Call("GET", "/v1/alarms/" + id, "", 200)["history"][0]["source"], "edge:gw-test");
  ASSERT_TRUE(WaitFor([&] { return edge_->Get("strata_edge_rule_alarms_pending") == 0; }, std::chrono::seconds(10)));
  // A crash of both sides and a reconnect change nothing: each transition was applied once.
  edge_->process().Stop(SIGKILL);
  cloud_->process().Stop(SIGKILL);
  cloud_->Restart();
  edge_->Start();
  ASSERT_TRUE(WaitForEdgeRules(1));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(Alarms("spindle_overheat").size(), 1u);
  EXPECT_EQ(History(id), want);
}

TEST_F(EdgeRulesE2ETest, KilledInTheMiddleOfADurationItFiresAtTheSameTimestamp) {
  StartEdge(cloud_->GrpcAddress());
  Call("POST", "/v1/rules", Overheat("overheat", "EDGE", "spindle_overheat").dump(), 200);
  ASSERT_TRUE(WaitForEdgeRules(1));
  // 90 from 2 s to 20 s: 18 s along when the edge is killed, at once (its state may not be
  // saved yet: the readings it covers are replayed from the buffer).
  Publish(Series(2000, 20000, 90.0));
  ASSERT_TRUE(WaitFor([&] { return Evaluations() >= 10; }, std::chrono::seconds(10)));
  edge_->process().Stop(SIGKILL);
  EXPECT_TRUE(Alarms("spindle_overheat").empty()) << "nothing fired before the kill";
  edge_->Start();
  Publish(Series(22000, 40000, 90.0));
  json alarms;
  ASSERT_TRUE(WaitForAlarms("spindle_overheat", alarms));
  EXPECT_EQ(alarms.size(), 1u);
  EXPECT_EQ(alarms[0]["start_ts"], std::to_string(kT0 + 2000 + 30000)) << "as if it had never been killed";
}

TEST_F(EdgeRulesE2ETest, TheSameStreamThroughAnEdgeAndACloudRuleMakesTheSameTransitions) {
  StartEdge(cloud_->GrpcAddress());
  Call("POST", "/v1/rules", Overheat("overheat-edge", "EDGE", "overheat_edge").dump(), 200);
  Call("POST", "/v1/rules", Overheat("overheat-cloud", "CLOUD", "overheat_cloud").dump(), 200);
  ASSERT_TRUE(WaitForEdgeRules(1));
  // The cloud's rule runner has read its rules once it has evaluated a reading.
  ASSERT_TRUE(WaitFor(
      [&] {
        Publish({{0, 70.0}});
        return MetricTotal(cloud_->Http("GET", "/metrics").body, "strata_cloud_rule_evaluations_total") > 0;
      },
      std::chrono::seconds(20)));
  // A recorded stream: a slow wave between 60 and 105 with noise, one reading a second for
  // 20 minutes, so it crosses every level, escalates, de-escalates and clears several times.
  std::vector<std::pair<std::int64_t, double>> stream;
  std::uint32_t noise = 12345;
  for (int i = 1; i <= 1200; ++i) {
    noise = noise * 1103515245u + 12345u;
    const double wave = 82.5 + 22.5 * std::sin(i / 60.0);
    stream.emplace_back(std::int64_t{i} * 1000, wave + static_cast<double>((noise >> 16) % 600) / 100.0 - 3.0);
  }
  Publish(stream);
  auto transitions = [&](const std::string& type) {
    std::vector<std::string> out;
    json alarms = Alarms(type);
    for (auto it = alarms.rbegin(); it != alarms.rend(); ++it) {
      for (const auto& h : History((*it)["alarm_id"])) out.push_back(h);
    }
    return out;
  };
  std::vector<std::string> edge, cloud;
  ASSERT_TRUE(WaitFor(
      [&] {
        edge = transitions("overheat_edge");
        cloud = transitions("overheat_cloud");
        return edge.size() >= 6 && edge == cloud && edge_->Get("strata_edge_rule_alarms_pending") == 0;
      },
      std::chrono::seconds(30)))
      << "edge: " << json(edge).dump() << "\ncloud: " << json(cloud).dump();
  EXPECT_GE(Alarms("overheat_edge").size(), 2u) << "raised more than once";
}

TEST_F(EdgeRulesE2ETest, ACloudAckDuringAPartitionAndAnEdgeClearMeanwhileConverge) {
  const std::string id = RaiseOverheatAtTheEdge();
  ASSERT_FALSE(id.empty());
  // The partition: the edge cannot reach the cloud, which is up and takes the ack.
  edge_->process().Stop(SIGTERM);
  StartEdge("127.0.0.1:1");
  EXPECT_EQ(Call("POST", "/v1/alarms/" + id + ":ack", "{}", 200)["status"], "ALARM_STATUS_ACTIVE_ACK");
  Publish({{42000, 70.0}});
  ASSERT_TRUE(WaitFor([&] { return edge_->Get("strata_edge_rule_transitions_total") == 1; }, std::chrono::seconds(15)))
      << "cleared at the edge during the partition";
  edge_->process().Stop(SIGTERM);
  StartEdge(cloud_->GrpcAddress());
  ASSERT_TRUE(WaitFor(
      [&] { return Call("GET", "/v1/alarms/" + id, "", 200)["status"] == "ALARM_STATUS_CLEARED_ACK"; },
      std::chrono::seconds(20)));
  json got = Call("GET", "/v1/alarms/" + id, "", 200);
  EXPECT_EQ(got["end_ts"], std::to_string(kT0 + 42000));
  EXPECT_EQ(Alarms("spindle_overheat").size(), 1u);
}

TEST_F(EdgeRulesE2ETest, ARenamedRuleKeepsItsStateAndItsAlarmStillClears) {
  const std::string id = RaiseOverheatAtTheEdge();
  ASSERT_FALSE(id.empty());
  const std::string since = Call("GET", "/v1/rules/overheat", "", 200)["evaluated_since"];
  // A new name changes nothing the rule evaluates: its alarm and the edge's state stay.
  EXPECT_EQ(Call("PATCH", "/v1/rules/overheat", R"({"name":"Spindle hot"})", 200)["evaluated_since"], since);
  const double revision = edge_->Get("strata_edge_config_revision");
  ASSERT_TRUE(WaitFor([&] { return edge_->Get("strata_edge_config_revision") > revision; },
                      std::chrono::seconds(15)))
      << "the renamed rule reaches the edge";
  EXPECT_EQ(Call("GET", "/v1/alarms/" + id, "", 200)["status"], "ALARM_STATUS_ACTIVE_UNACK");
  Publish({{42000, 70.0}});
  ASSERT_TRUE(WaitFor(
      [&] { return Call("GET", "/v1/alarms/" + id, "", 200)["status"] == "ALARM_STATUS_CLEARED_UNACK"; },
      std::chrono::seconds(20)))
      << "the edge's clear is taken: the rule it ran is the rule as it is";
}

TEST_F(EdgeRulesE2ETest, AnEdgeThatLostItsBufferNumbersItsAlarmsAboveTheCloudsMark) {
  StartEdge(cloud_->GrpcAddress());
  Call("POST", "/v1/rules", Overheat("overheat", "EDGE", "spindle_overheat").dump(), 200);
  ASSERT_TRUE(WaitForEdgeRules(1));
  auto readings = Series(0, 40000, 90.0);
  readings.emplace_back(42000, 70.0);
  Publish(readings);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto a = Alarms("spindle_overheat");
        return a.size() == 1 && a[0]["status"] == "ALARM_STATUS_CLEARED_UNACK";
      },
      std::chrono::seconds(20)));
  // The gateway's buffer (and the alarm outbox in it) is lost; its config stays.
  edge_->process().Stop(SIGTERM);
  std::remove((dir_.path() + "/edge/buffer.db").c_str());
  std::remove((dir_.path() + "/edge/buffer.db-wal").c_str());
  std::remove((dir_.path() + "/edge/buffer.db-shm").c_str());
  edge_->Start();
  Publish(Series(100000, 140000, 90.0));
  ASSERT_TRUE(WaitFor([&] { return Alarms("spindle_overheat").size() == 2; }, std::chrono::seconds(20)))
      << "the new alarm is not taken for one the cloud has: " << Alarms("spindle_overheat").dump();
  EXPECT_EQ(Alarms("spindle_overheat")[0]["start_ts"], std::to_string(kT0 + 130000));
}

}  // namespace
}  // namespace strata::testing
