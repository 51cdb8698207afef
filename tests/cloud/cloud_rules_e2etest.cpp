// Rules and alarms over the REST API of a running strata-cloud, on both backends: a bad
// rule is a 400 naming the field, the line and the column; the rule lifecycle; a dry run
// over stored telemetry; the alarms API's errors and filters.
#include <signal.h>

#include "support/cloud_process.h"
#include "support/metrics_text.h"

namespace strata::testing {
namespace {

using nlohmann::json;

constexpr std::int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z

class CloudRulesTest : public CloudTest {
 protected:
  json Call(const std::string& method, const std::string& target, const std::string& body, int want) {
    auto r = cloud_->Http(method, target, body);
    EXPECT_EQ(r.status, want) << method << " " << target << " " << body << " -> " << r.body;
    return cloud_->Json(r);
  }
  // Writes temperature readings at kT0 + each of `at` (ms).
  void WriteTemps(CloudProcess& cloud, const std::string& device,
                  const std::vector<std::pair<std::int64_t, double>>& at) {
    json points = json::array();
    for (const auto& [ms, t] : at) points.push_back({{"ts", kT0 + ms}, {"values", {{"temperature", t}}}});
    auto r = cloud.Http("POST", "/v1/devices/" + device + "/telemetry", points.dump());
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // Until the rule runner has evaluated a reading of the device (a 70 at kT0).
  bool WaitForRunner(const std::string& device) {
    return WaitFor(
        [&] {
          WriteTemps(*cloud_, device, {{0, 70.0}});
          return MetricTotal(cloud_->Http("GET", "/metrics").body, "strata_cloud_rule_evaluations_total") > 0;
        },
        std::chrono::seconds(15));
  }
  // Until the device has an alarm; the newest is `alarm`.
  bool WaitForAlarm(const std::string& device, json& alarm) {
    return WaitFor(
        [&] {
          json list = Call("GET", "/v1/alarms?device_id=" + device, "", 200);
          if (list["alarms"].empty()) return false;
          alarm = list["alarms"][0];
          return true;
        },
        std::chrono::seconds(10));
  }
};

// "Spindle temperature above 85 for 30 s raises MAJOR; above 95 CRITICAL; below 80 clears."
const char* kOverheat = R"({
  "rule_id": "overheat",
  "name": "Spindle overheating",
  "alarm_type": "spindle_overheat",
  "device_type": "spindle",
  "raise": [{"severity": "MAJOR", "condition": "temperature > 85.0"},
            {"severity": "CRITICAL", "condition": "temperature > 95.0"}],
  "clear": "temperature < 80.0",
  "for_ms": "30000"
})";

TEST_P(CloudRulesTest, BadRulesAreA400NamingTheFieldLineAndColumn) {
  struct Case {
    const char* body;
    const char* message;
  };
  const Case cases[] = {
      {R"({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"temperature >"}]})",
       "raise[0].condition: 1:14: unexpected end of input"},
      {R"({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"temperature > 85.0"}],"clear":"t < 'x' + 1"})",
       "clear: 1:9: found no matching overload for '_+_' applied to '(string, int)'"},
      {R"js({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"nosuch(temperature)"}]})js",
       "raise[0].condition: 1:1: undeclared reference to 'nosuch'"},
      {R"({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"temperature * 2"}]})", "must be bool"},
      {R"({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"temperature"}],"times":3})",
       "times and within_ms go together"},
      {R"({"alarm_type":"t","raise":[{"condition":"temperature > 1.0"}]})", "raise[0].severity"},
      {R"({"raise":[{"severity":"MAJOR","condition":"temperature > 1.0"}]})", "alarm_type"},
      {R"({"alarm_type":"t"})", "raise: at least one level"},
  };
  for (const auto& c : cases) {
    json err = Call("POST", "/v1/rules", c.body, 400);
    EXPECT_EQ(err["error"]["status"], "INVALID_ARGUMENT") << c.body;
    EXPECT_NE(err["error"]["message"].get<std::string>().find(c.message), std::string::npos)
        << c.body << " -> " << err.dump();
  }
  // Loops are outside the language: refused when the rule is written, as UNIMPLEMENTED (501).
  json loop = Call("POST", "/v1/rules",
                   R"js({"alarm_type":"t","raise":[{"severity":"MAJOR","condition":"[1, 2].all(x, x > temperature)"}]})js",
                   501);
  EXPECT_NE(loop["error"]["message"].get<std::string>().find("loops are not in the subset"), std::string::npos);
  EXPECT_TRUE(Call("GET", "/v1/rules", "", 200)["rules"].empty()) << "nothing was stored";
}

TEST_P(CloudRulesTest, RuleLifecycle) {
  json created = Call("POST", "/v1/rules", kOverheat, 200);
  EXPECT_EQ(created["rule_id"], "overheat");
  EXPECT_EQ(created["enabled"], true) << "enabled unless said otherwise";
  EXPECT_EQ(created["location"], "RULE_LOCATION_CLOUD");
  EXPECT_EQ(created["raise"][1]["severity"], "ALARM_SEVERITY_CRITICAL");
  Call("POST", "/v1/rules", kOverheat, 409);
  json generated = Call("POST", "/v1/rules",
                        R"({"alarm_type":"silent","no_data_ms":"300000","raise":[{"severity":"WARNING"}]})", 200);
  EXPECT_EQ(generated["rule_id"].get<std::string>().size(), 32u);

  // PATCH without a mask changes what the body sets; with one, exactly the named fields.
  json patched = Call("PATCH", "/v1/rules/overheat", R"({"enabled":false,"for_ms":"10000"})", 200);
  EXPECT_EQ(patched["enabled"], false);
  EXPECT_EQ(patched["for_ms"], "10000");
  EXPECT_EQ(patched["clear"], "temperature < 80.0");
  EXPECT_EQ(patched["created_at"], created["created_at"]);
  patched = Call("PATCH", "/v1/rules/overheat?update_mask=clear", R"({})", 200);
  EXPECT_EQ(patched["clear"], "");
  json bad = Call("PATCH", "/v1/rules/overheat", R"({"raise":[{"severity":"MAJOR","condition":"temperature >>"}]})",
                  400);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("raise[0].condition: 1:14:"), std::string::npos) << bad;
  EXPECT_EQ(Call("GET", "/v1/rules/overheat", "", 200)["raise"].size(), 2u) << "a refused change changes nothing";
  Call("PATCH", "/v1/rules/overheat?update_mask=tenant_id", R"({})", 400);
  Call("PATCH", "/v1/rules/nope", R"({"name":"x"})", 404);

  json page = Call("GET", "/v1/rules?page_size=1", "", 200);
  ASSERT_EQ(page["rules"].size(), 1u);
  ASSERT_FALSE(page["next_page_token"].get<std::string>().empty());
  json rest = Call("GET", "/v1/rules?page_size=1&page_token=" + page["next_page_token"].get<std::string>(), "", 200);
  ASSERT_EQ(rest["rules"].size(), 1u);
  EXPECT_NE(rest["rules"][0]["rule_id"], page["rules"][0]["rule_id"]);

  Call("DELETE", "/v1/rules/overheat", "", 200);
  Call("GET", "/v1/rules/overheat", "", 404);
  Call("DELETE", "/v1/rules/overheat", "", 404);
}

TEST_P(CloudRulesTest, DryRunReplaysStoredTelemetry) {
  Call("POST", "/v1/devices", R"({"device_id":"spindle-1","type":"spindle"})", 200);
  Call("POST", "/v1/devices", R"({"device_id":"spindle-2","type":"spindle"})", 200);
  Call("POST", "/v1/devices", R"({"device_id":"pump-1","type":"pump"})", 200);
  // spindle-1: 90 from 8 s to 60 s (one reading every 4 s), 97 at 64 s, then 70.
  // spindle-2: always 70. pump-1: 99, but not a spindle.
  json s1 = json::array(), s2 = json::array(), p1 = json::array();
  for (int i = 0; i < 30; ++i) {
    const std::int64_t at = i * 4000;
    const double t = at >= 8000 && at < 64000 ? 90.0 : (at == 64000 ? 97.0 : 70.0);
    s1.push_back({{"ts", kT0 + at}, {"values", {{"temperature", t}}}});
    s2.push_back({{"ts", kT0 + at}, {"values", {{"temperature", 70.0}}}});
    p1.push_back({{"ts", kT0 + at}, {"values", {{"temperature", 99.0}}}});
  }
  Call("POST", "/v1/devices/spindle-1/telemetry", s1.dump(), 200);
  Call("POST", "/v1/devices/spindle-2/telemetry", s2.dump(), 200);
  Call("POST", "/v1/devices/pump-1/telemetry", p1.dump(), 200);
  Call("POST", "/v1/rules", kOverheat, 200);

  const std::string range = R"({"start":")" + std::to_string(kT0) + R"(","end":")" + std::to_string(kT0 + 3600000) +
                            R"("})";
  json run = Call("POST", "/v1/rules/overheat:dryRun", range, 200);
  EXPECT_EQ(run["devices"], 2) << "the spindles";
  EXPECT_EQ(run["readings"], "60");
  EXPECT_EQ(run["truncated"], false);
  ASSERT_EQ(run["transitions"].size(), 3u) << run.dump();
  const json& raised = run["transitions"][0];
  EXPECT_EQ(raised["device_id"], "spindle-1");
  EXPECT_EQ(raised["kind"], "RAISED");
  EXPECT_EQ(raised["severity"], "ALARM_SEVERITY_MAJOR");
  EXPECT_EQ(raised["ts"], std::to_string(kT0 + 8000 + 30000)) << "when it had held for 30 s";
  EXPECT_EQ(raised["values"]["temperature"], 90);
  EXPECT_EQ(run["transitions"][1]["kind"], "SEVERITY_CHANGED");
  EXPECT_EQ(run["transitions"][1]["severity"], "ALARM_SEVERITY_CRITICAL");
  EXPECT_EQ(run["transitions"][1]["ts"], std::to_string(kT0 + 64000));
  EXPECT_EQ(run["transitions"][2]["kind"], "CLEARED");
  EXPECT_EQ(run["transitions"][2]["ts"], std::to_string(kT0 + 68000));
  // The same run twice gives the same answer, and changed nothing.
  EXPECT_EQ(Call("POST", "/v1/rules/overheat:dryRun", range, 200), run);
  EXPECT_TRUE(Call("GET", "/v1/alarms", "", 200)["alarms"].empty());

  Call("POST", "/v1/rules/overheat:dryRun", R"({"start":"10","end":"5"})", 400);
  Call("POST", "/v1/rules/nope:dryRun", range, 404);
}

TEST_P(CloudRulesTest, AlarmsApiErrors) {
  json list = Call("GET", "/v1/alarms?device_id=spindle-1&severity=CRITICAL&status=ACTIVE_UNACK", "", 200);
  EXPECT_TRUE(list["alarms"].empty());
  Call("GET", "/v1/alarms/nope", "", 404);
  Call("POST", "/v1/alarms/nope:ack", "{}", 404);
  Call("POST", "/v1/alarms/nope:clear", "{}", 404);
  Call("GET", "/v1/alarms?start=10&end=5", "", 400);
  Call("GET", "/v1/alarms?page_token=garbage", "", 400);
}


TEST_P(CloudRulesTest, ALiveRuleRaisesEscalatesAndClearsOneAlarm) {
  Call("POST", "/v1/devices", R"({"device_id":"spindle-1","type":"spindle"})", 200);
  Call("POST", "/v1/rules", kOverheat, 200);
  // The runner reads the rules every 2 s: wait until it has this one (an evaluation counts).
  ASSERT_TRUE(WaitForRunner("spindle-1")) << "the rule runner evaluates the device's readings";
  std::vector<std::pair<std::int64_t, double>> hot;
  for (std::int64_t ms = 4000; ms <= 40000; ms += 4000) hot.emplace_back(ms, 90.0);
  WriteTemps(*cloud_, "spindle-1", hot);
  json alarm;
  ASSERT_TRUE(WaitForAlarm("spindle-1", alarm));
  EXPECT_EQ(alarm["type"], "spindle_overheat");
  EXPECT_EQ(alarm["status"], "ALARM_STATUS_ACTIVE_UNACK");
  EXPECT_EQ(alarm["severity"], "ALARM_SEVERITY_MAJOR");
  EXPECT_EQ(alarm["rule_id"], "overheat");
  EXPECT_EQ(alarm["start_ts"], std::to_string(kT0 + 4000 + 30000)) << "when it had held for 30 s";
  EXPECT_EQ(alarm["details"]["temperature"], 90);
  const std::string id = alarm["alarm_id"];

  WriteTemps(*cloud_, "spindle-1", {{44000, 97.0}});
  ASSERT_TRUE(WaitFor([&] { return Call("GET", "/v1/alarms/" + id, "", 200)["severity"] == "ALARM_SEVERITY_CRITICAL"; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(Call("POST", "/v1/alarms/" + id + ":ack", "{}", 200)["status"], "ALARM_STATUS_ACTIVE_ACK");
  WriteTemps(*cloud_, "spindle-1", {{48000, 85.0}, {52000, 70.0}});
  ASSERT_TRUE(WaitFor([&] { return Call("GET", "/v1/alarms/" + id, "", 200)["status"] == "ALARM_STATUS_CLEARED_ACK"; },
                      std::chrono::seconds(10)));
  json got = Call("GET", "/v1/alarms/" + id, "", 200);
  EXPECT_EQ(got["end_ts"], std::to_string(kT0 + 52000));
  std::vector<std::string> kinds;
  for (const auto& e : got["history"]) kinds.push_back(e["kind"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"RAISED", "SEVERITY_CHANGED", "ACKNOWLEDGED", "CLEARED"}));
  EXPECT_EQ(Call("GET", "/v1/alarms", "", 200)["alarms"].size(), 1u) << "one alarm, whatever the number of readings";
}

TEST_P(CloudRulesTest, ChangingARuleEndsItsActiveAlarmsAndARenameDoesNot) {
  Call("POST", "/v1/devices", R"({"device_id":"spindle-1","type":"spindle"})", 200);
  Call("POST", "/v1/rules", kOverheat, 200);
  ASSERT_TRUE(WaitForRunner("spindle-1"));
  std::vector<std::pair<std::int64_t, double>> hot;
  for (std::int64_t ms = 4000; ms <= 40000; ms += 4000) hot.emplace_back(ms, 90.0);
  WriteTemps(*cloud_, "spindle-1", hot);
  json alarm;
  ASSERT_TRUE(WaitForAlarm("spindle-1", alarm));
  const std::string id = alarm["alarm_id"];
  Call("PATCH", "/v1/rules/overheat", R"js({"name":"Spindle overheating (renamed)"})js", 200);
  EXPECT_EQ(Call("GET", "/v1/alarms/" + id, "", 200)["status"], "ALARM_STATUS_ACTIVE_UNACK") << "a rename keeps it";
  Call("PATCH", "/v1/rules/overheat", R"({"for_ms":"60000"})", 200);
  json got = Call("GET", "/v1/alarms/" + id, "", 200);
  EXPECT_EQ(got["status"], "ALARM_STATUS_CLEARED_UNACK") << "what raised it is not the rule any more";
  EXPECT_EQ(got["history"].back()["source"], "rule:overheat changed");
  Call("DELETE", "/v1/rules/overheat", "", 200);
}

TEST_P(CloudRulesTest, KilledInTheMiddleOfADurationItFiresAtTheSameTimestamp) {
  Call("POST", "/v1/devices", R"({"device_id":"spindle-1","type":"spindle"})", 200);
  Call("POST", "/v1/rules", kOverheat, 200);
  ASSERT_TRUE(WaitForRunner("spindle-1")) << "the rule runner evaluates the device's readings";
  // 90 from 2 s to 20 s: the DURATION is 18 s along when the process is killed.
  std::vector<std::pair<std::int64_t, double>> first;
  for (std::int64_t ms = 2000; ms <= 20000; ms += 2000) first.emplace_back(ms, 90.0);
  WriteTemps(*cloud_, "spindle-1", first);
  const double saved = MetricTotal(cloud_->Http("GET", "/metrics").body, "strata_cloud_rule_states_saved_total");
  ASSERT_TRUE(WaitFor(
      [&] {
        return MetricTotal(cloud_->Http("GET", "/metrics").body, "strata_cloud_rule_states_saved_total") > saved;
      },
      std::chrono::seconds(10)))
      << "the state is saved within a second";
  // The rule's clock is its readings': 18 s along, nothing has fired, however late the
  // wall clock is past these readings.
  EXPECT_TRUE(Call("GET", "/v1/alarms?device_id=spindle-1", "", 200)["alarms"].empty());
  cloud_->process().Stop(SIGKILL);
  cloud_->Restart();
  std::vector<std::pair<std::int64_t, double>> rest;
  for (std::int64_t ms = 22000; ms <= 40000; ms += 2000) rest.emplace_back(ms, 90.0);
  // The restarted runner reads the rule (and its state) at once; readings before that are
  // not lost to it: the first round loads the rules before it evaluates.
  WriteTemps(*cloud_, "spindle-1", rest);
  json alarm;
  ASSERT_TRUE(WaitForAlarm("spindle-1", alarm));
  EXPECT_EQ(alarm["start_ts"], std::to_string(kT0 + 2000 + 30000)) << "as if it had never been killed";
}

INSTANTIATE_TEST_SUITE_P(Backends, CloudRulesTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::testing
