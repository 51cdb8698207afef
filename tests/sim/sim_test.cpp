// strata-sim's generation logic, without a broker: determinism, scenario value ranges,
// payload shapes, and malformed messages that are malformed in exactly the stated way.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "generator.h"
#include "report.h"
#include "responder.h"
#include "scenario.h"

namespace strata::sim {
namespace {

using nlohmann::json;

constexpr std::int64_t kStartTs = 1'700'000'000'000;

GeneratorOptions Options(std::uint64_t seed) {
  GeneratorOptions o;
  o.seed = seed;
  o.start_ts = kStartTs;
  o.step_ms = 100;
  return o;
}

std::vector<Message> Take(Generator& g, int n, std::int64_t now_ms = kStartTs) {
  std::vector<Message> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(g.Next(now_ms));
  return out;
}

// The device id in PREFIX/{id}/telemetry.
std::string DeviceOfTopic(const std::string& topic, const std::string& prefix = "v1/devices") {
  const std::string head = prefix + "/", tail = "/telemetry";
  if (topic.size() <= head.size() + tail.size() || topic.compare(0, head.size(), head) != 0 ||
      topic.compare(topic.size() - tail.size(), tail.size(), tail) != 0) {
    return "";
  }
  return topic.substr(head.size(), topic.size() - head.size() - tail.size());
}

// The points of a good payload: each {"ts"?, values}.
struct Point {
  std::optional<std::int64_t> ts;
  json values;
};
std::vector<Point> PointsOf(const json& doc) {
  std::vector<Point> out;
  auto one = [&](const json& p) {
    if (p.contains("values")) {
      out.push_back({p.at("ts").get<std::int64_t>(), p.at("values")});
    } else {
      out.push_back({std::nullopt, p});
    }
  };
  if (doc.is_array()) {
    for (const auto& p : doc) one(p);
  } else {
    one(doc);
  }
  return out;
}

std::set<std::string> KeyNames(Scenario s) {
  std::set<std::string> out;
  for (const KeySpec& k : KeysOf(s)) out.insert(std::string(k.key));
  return out;
}

TEST(SimGeneratorTest, SameSeedGivesTheSameMessages) {
  GeneratorOptions o = Options(42);
  o.shape = PayloadShape::kMixed;
  o.malformed_ratio = 0.1;
  o.devices = 9;
  Generator a(o), b(o);
  const auto ma = Take(a, 3000), mb = Take(b, 3000);
  for (std::size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i].topic, mb[i].topic) << i;
    ASSERT_EQ(ma[i].payload, mb[i].payload) << i;
    ASSERT_EQ(ma[i].device, mb[i].device) << i;
    ASSERT_EQ(ma[i].malformed, mb[i].malformed) << i;
    ASSERT_EQ(ma[i].readings, mb[i].readings) << i;
  }
}

TEST(SimGeneratorTest, ValuesDoNotDependOnTheClock) {
  // Without start_ts the timestamps come from the clock, but topics and values must not.
  GeneratorOptions o = Options(7);
  o.start_ts.reset();
  Generator a(o), b(o);
  for (int i = 0; i < 2000; ++i) {
    const Message ma = a.Next(1'000 + i), mb = b.Next(1'800'000'000'000 + 37 * i);
    ASSERT_EQ(ma.topic, mb.topic);
    const json ja = json::parse(ma.payload), jb = json::parse(mb.payload);
    ASSERT_EQ(ja.at("values"), jb.at("values")) << i;
    ASSERT_NE(ja.at("ts"), jb.at("ts"));
  }
}

TEST(SimGeneratorTest, DifferentSeedsDiffer) {
  Generator a(Options(1)), b(Options(2));
  const auto ma = Take(a, 600), mb = Take(b, 600);
  int same = 0;
  for (std::size_t i = 0; i < ma.size(); ++i) same += ma[i].payload == mb[i].payload;
  EXPECT_LT(same, 10);
}

TEST(SimGeneratorTest, DeviceIdsAreSpreadOverScenarios) {
  GeneratorOptions o = Options(3);
  o.devices = 8;
  Generator g(o);
  std::vector<std::string> ids;
  for (const Device& d : g.devices()) ids.push_back(d.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"mfg-0001", "agri-0001", "grid-0001", "health-0001", "traffic-0001",
                                           "env-0001", "mfg-0002", "agri-0002"}));
  // Every device speaks once per round.
  std::map<std::string, int> counts;
  for (const Message& m : Take(g, 8 * 500)) ++counts[DeviceOfTopic(m.topic)];
  ASSERT_EQ(counts.size(), 8u);
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 500) << id;
}

TEST(SimGeneratorTest, ScenarioSubsetAndTopicPrefix) {
  GeneratorOptions o = Options(3);
  o.scenarios = ParseScenarioList("grid, healthcare");
  o.devices = 4;
  o.topic_prefix = "site-a/devices/";
  Generator g(o);
  std::set<std::string> ids;
  for (const Message& m : Take(g, 40)) ids.insert(DeviceOfTopic(m.topic, "site-a/devices"));
  EXPECT_EQ(ids, (std::set<std::string>{"grid-0001", "grid-0002", "health-0001", "health-0002"}));
}

// Plausible field values, stated independently of the model's own bounds.
struct Range {
  double lo, hi;
  bool integer;
  double mean_lo, mean_hi;  // bounds for the mean over the run
};
const std::map<std::string, Range> kPlausible = {
    {"machine_temperature", {15, 120, false, 50, 80}},
    {"vibration", {0, 25, false, 1, 8}},
    {"spindle_speed", {0, 24000, true, 10000, 14000}},
    {"soil_moisture", {0, 100, false, 20, 45}},
    {"air_temperature", {-20, 50, false, 10, 26}},
    {"humidity", {0, 100, false, 45, 85}},
    {"light", {0, 120000, true, 10000, 40000}},
    {"voltage", {207, 253, false, 227, 233}},
    {"current", {0, 63, false, 8, 24}},
    {"power_factor", {0.7, 1.0, false, 0.9, 0.99}},
    {"frequency", {49.95, 50.05, false, 49.99, 50.01}},
    {"heart_rate", {40, 180, true, 60, 85}},
    {"spo2", {95, 100, true, 96, 99.5}},
    {"body_temperature", {35.5, 38.5, false, 36.4, 37.2}},
    {"vehicle_count", {0, 400, true, 25, 70}},
    {"average_speed", {5, 130, false, 45, 75}},
    {"lane_occupancy", {0, 100, false, 5, 30}},
    {"pm2_5", {0, 500, false, 8, 35}},
    {"pm10", {0, 600, false, 15, 80}},
    {"no2", {0, 400, false, 15, 50}},
    {"o3", {0, 300, false, 40, 80}},
};

class SimScenarioTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(SimScenarioTest, KeysPresentAndValuesPlausible) {
  const Scenario s = GetParam();
  GeneratorOptions o = Options(11);
  o.scenarios = {s};
  o.devices = 3;
  o.step_ms = 60'000;  // one sample a minute: 10k samples cover about a week of daily cycles
  Generator g(o);
  const std::set<std::string> keys = KeyNames(s);
  std::map<std::string, double> sum, sumsq;
  const int n = 10'000;
  for (int i = 0; i < n; ++i) {
    const Message m = g.Next(0);
    ASSERT_FALSE(m.malformed);
    const json doc = json::parse(m.payload);
    const json& values = doc.at("values");
    std::set<std::string> got;
    for (const auto& [k, v] : values.items()) {
      got.insert(k);
      const Range& r = kPlausible.at(k);
      ASSERT_TRUE(v.is_number()) << k;
      if (r.integer) {
        ASSERT_TRUE(v.is_number_integer()) << k << " = " << v;
      }
      const double x = v.get<double>();
      ASSERT_GE(x, r.lo) << k;
      ASSERT_LE(x, r.hi) << k;
      sum[k] += x;
      sumsq[k] += x * x;
    }
    ASSERT_EQ(got, keys);
    ASSERT_EQ(m.readings, keys.size());
    if (s == Scenario::kEnvironment) {
      ASSERT_GE(values["pm10"].get<double>(), values["pm2_5"].get<double>());
    }
    if (s == Scenario::kAgriculture) {
      const double hour = std::fmod((doc["ts"].get<std::int64_t>() / 3'600'000.0), 24.0);
      if (hour < 5.5 || hour > 18.5) {
        ASSERT_EQ(values["light"].get<std::int64_t>(), 0) << hour;
      }
    }
  }
  for (const auto& k : keys) {
    const Range& r = kPlausible.at(k);
    const double mean = sum[k] / n, var = sumsq[k] / n - mean * mean;
    EXPECT_GE(mean, r.mean_lo) << k;
    EXPECT_LE(mean, r.mean_hi) << k;
    EXPECT_GT(var, 0) << k << " never changes";
  }
}

INSTANTIATE_TEST_SUITE_P(AllScenarios, SimScenarioTest, ::testing::ValuesIn(kAllScenarios),
                         [](const auto& info) { return std::string(ScenarioName(info.param)); });

TEST(SimPayloadTest, TsShape) {
  GeneratorOptions o = Options(5);
  Generator g(o);
  const auto msgs = Take(g, 600);
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const json doc = json::parse(msgs[i].payload);
    ASSERT_TRUE(doc.is_object());
    ASSERT_EQ(doc.size(), 2u);
    ASSERT_TRUE(doc.at("ts").is_number_integer());
    // The i-th sample is at start_ts + i * step.
    ASSERT_EQ(doc.at("ts").get<std::int64_t>(), kStartTs + static_cast<std::int64_t>(i) * o.step_ms);
    ASSERT_TRUE(doc.at("values").is_object());
    ASSERT_EQ(doc.at("values").size(), msgs[i].readings);
    for (const auto& [k, v] : doc.at("values").items()) ASSERT_TRUE(v.is_number()) << k;
  }
}

TEST(SimPayloadTest, FlatShape) {
  GeneratorOptions o = Options(5);
  o.shape = PayloadShape::kFlat;
  Generator g(o);
  for (const Message& m : Take(g, 600)) {
    const json doc = json::parse(m.payload);
    ASSERT_TRUE(doc.is_object());
    ASSERT_FALSE(doc.contains("ts"));
    ASSERT_FALSE(doc.contains("values"));
    ASSERT_EQ(doc.size(), m.readings);
    ASSERT_EQ(KeyNames(g.devices()[m.device].scenario).size(), doc.size());
    for (const auto& [k, v] : doc.items()) ASSERT_TRUE(v.is_number()) << k;
  }
}

TEST(SimPayloadTest, MixedShapeHasEveryForm) {
  GeneratorOptions o = Options(5);
  o.shape = PayloadShape::kMixed;
  Generator g(o);
  int ts = 0, flat = 0, ts_arrays = 0, flat_arrays = 0;
  std::int64_t last_ts = -1;
  for (const Message& m : Take(g, 3000)) {
    const json doc = json::parse(m.payload);
    const std::set<std::string> keys = KeyNames(g.devices()[m.device].scenario);
    std::size_t readings = 0;
    std::set<std::string> seen;
    for (const Point& p : PointsOf(doc)) {
      readings += p.values.size();
      for (const auto& [k, v] : p.values.items()) {
        ASSERT_TRUE(v.is_number());
        ASSERT_TRUE(keys.count(k)) << k;
        if (!p.ts) {
          ASSERT_TRUE(seen.insert(k).second) << "flat points of one message repeat " << k;
        }
      }
      if (p.ts) {
        ASSERT_GT(*p.ts, last_ts);  // start_ts + sample * step: strictly increasing
        last_ts = *p.ts;
        ASSERT_EQ(p.values.size(), keys.size());
      }
    }
    ASSERT_EQ(readings, m.readings);
    if (!doc.is_array()) {
      (doc.contains("values") ? ts : flat)++;
    } else if (doc.at(0).contains("values")) {
      ASSERT_GE(doc.size(), 2u);
      ++ts_arrays;
    } else {
      ASSERT_EQ(seen, keys) << "a split sample carries every key once";
      ++flat_arrays;
    }
  }
  EXPECT_GT(ts, 1000);
  EXPECT_GT(flat, 1000);
  EXPECT_GT(ts_arrays, 50);
  EXPECT_GT(flat_arrays, 50);
}

TEST(SimPayloadTest, ClockTimestampsIncreasePerDevice) {
  GeneratorOptions o = Options(5);
  o.start_ts.reset();
  o.shape = PayloadShape::kMixed;
  Generator g(o);
  std::map<std::string, std::int64_t> last;
  // A frozen clock: timestamps must still never repeat for a device.
  for (const Message& m : Take(g, 3000, 1'750'000'000'000)) {
    for (const Point& p : PointsOf(json::parse(m.payload))) {
      if (!p.ts) continue;
      auto [it, fresh] = last.emplace(m.topic, *p.ts);
      if (!fresh) {
        ASSERT_GT(*p.ts, it->second);
        it->second = *p.ts;
      }
      ASSERT_GE(*p.ts, 1'750'000'000'000);
    }
  }
}

TEST(SimMalformedTest, RatioGivesTheExactCount) {
  for (double ratio : {0.0, 0.1, 0.25, 0.5, 0.7, 1.0}) {
    for (int n : {1000, 10000}) {
      GeneratorOptions o = Options(9);
      o.malformed_ratio = ratio;
      o.oversize_bytes = 512;  // keeps the test fast; sizes are checked below
      Generator g(o);
      int malformed = 0;
      std::set<std::size_t> devices;
      for (const Message& m : Take(g, n)) {
        if (m.malformed) {
          ++malformed;
          devices.insert(m.device);
          EXPECT_EQ(m.readings, 0u);
        }
      }
      EXPECT_EQ(malformed, static_cast<int>(std::floor(n * ratio + 1e-9))) << ratio << " of " << n;
      // Spread over every device, not stuck on one.
      if (ratio > 0) {
        EXPECT_EQ(devices.size(), g.devices().size()) << ratio;
      }
    }
  }
}

TEST(SimMalformedTest, KindsCycleInOrder) {
  GeneratorOptions o = Options(9);
  o.malformed_ratio = 0.5;
  o.malformed_kinds = ParseMalformedKinds("oversized,invalid_json");
  Generator g(o);
  std::vector<MalformedKind> kinds;
  for (const Message& m : Take(g, 20)) {
    if (m.malformed) kinds.push_back(*m.malformed);
  }
  ASSERT_EQ(kinds.size(), 10u);
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(kinds[i], i % 2 == 0 ? MalformedKind::kOversized : MalformedKind::kInvalidJson);
  }
}

// The readings object of a parsed malformed payload (ts or flat shape).
const json& ValuesOf(const json& doc) { return doc.contains("values") ? doc.at("values") : doc; }

void CheckMalformedIsInvalidAsStated(PayloadShape shape, std::size_t oversize_bytes) {
  GeneratorOptions o = Options(13);
  o.shape = shape;
  o.malformed_ratio = 0.3;
  o.oversize_bytes = oversize_bytes;
  Generator g(o);
  std::map<MalformedKind, int> seen;
  for (const Message& m : Take(g, 1000)) {
    const std::string id = DeviceOfTopic(m.topic);
    ASSERT_FALSE(id.empty()) << m.topic;
    ASSERT_EQ(id.find('/'), std::string::npos);
    if (!m.malformed) {
      ASSERT_LE(id.size(), 128u);
      ASSERT_TRUE(json::accept(m.payload));
      ASSERT_LE(m.payload.size(), oversize_bytes > 1000 ? oversize_bytes : 1000);
      continue;
    }
    ++seen[*m.malformed];
    const std::string name(MalformedKindName(*m.malformed));
    if (*m.malformed != MalformedKind::kInvalidDeviceId) {
      ASSERT_EQ(id, g.devices()[m.device].id) << name;
    }
    switch (*m.malformed) {
      case MalformedKind::kInvalidJson:
        ASSERT_FALSE(json::accept(m.payload)) << m.payload;
        ASSERT_FALSE(m.payload.empty());
        break;
      case MalformedKind::kWrongType:
      case MalformedKind::kNestedObject: {
        ASSERT_TRUE(json::accept(m.payload)) << name;
        const json doc = json::parse(m.payload);
        ASSERT_TRUE(doc.is_object());
        if (doc.contains("ts")) {
          ASSERT_TRUE(doc.at("ts").is_number_integer());
        }
        int bad = 0;
        for (const auto& [k, v] : ValuesOf(doc).items()) {
          if (v.is_number()) continue;
          ++bad;
          if (*m.malformed == MalformedKind::kWrongType) {
            ASSERT_TRUE(v.is_array()) << k;
          } else {
            ASSERT_TRUE(v.is_object()) << k;
            ASSERT_TRUE(v.at("value").is_number());
            ASSERT_TRUE(v.at("unit").is_string());
          }
        }
        ASSERT_EQ(bad, 1) << name << ": exactly one value breaks the rule: " << m.payload;
        break;
      }
      case MalformedKind::kOversized:
        ASSERT_GT(m.payload.size(), oversize_bytes);
        if (oversize_bytes >= 1000) {
          // Padded to exactly one byte over (a limit below a good payload's size is simply
          // exceeded by the unpadded payload).
          ASSERT_EQ(m.payload.size(), oversize_bytes + 1);
        }
        ASSERT_TRUE(json::accept(m.payload)) << "only the size is wrong";
        break;
      case MalformedKind::kInvalidDeviceId:
        ASSERT_GT(id.size(), 128u);
        ASSERT_EQ(id.rfind(g.devices()[m.device].id, 0), 0u) << "derived from the device's id";
        ASSERT_TRUE(json::accept(m.payload)) << "only the topic is wrong";
        break;
    }
  }
  for (MalformedKind k : kAllMalformedKinds) EXPECT_EQ(seen[k], 60) << MalformedKindName(k);
}

TEST(SimMalformedTest, EachKindIsInvalidAsStatedTs) { CheckMalformedIsInvalidAsStated(PayloadShape::kTs, 64 * 1024); }
TEST(SimMalformedTest, EachKindIsInvalidAsStatedFlat) { CheckMalformedIsInvalidAsStated(PayloadShape::kFlat, 4096); }
TEST(SimMalformedTest, EachKindIsInvalidAsStatedMixed) { CheckMalformedIsInvalidAsStated(PayloadShape::kMixed, 100); }

TEST(SimMalformedTest, OversizedExceedsEvenATinyLimit) {
  // A limit smaller than a good payload: the oversized one is still over it.
  GeneratorOptions o = Options(13);
  o.malformed_ratio = 1;
  o.malformed_kinds = {MalformedKind::kOversized};
  o.oversize_bytes = 10;
  Generator g(o);
  for (const Message& m : Take(g, 20)) EXPECT_GT(m.payload.size(), 10u);
}

TEST(SimParseTest, ScenarioLists) {
  EXPECT_EQ(ParseScenarioList("all").size(), 6u);
  EXPECT_EQ(ParseScenarioList("grid,healthcare,grid"), (std::vector<Scenario>{Scenario::kGrid, Scenario::kHealthcare}));
  EXPECT_THROW(ParseScenarioList("grid,mining"), std::invalid_argument);
  EXPECT_THROW(ParseScenarioList(""), std::invalid_argument);
  EXPECT_EQ(ParseMalformedKinds("all").size(), 5u);
  EXPECT_THROW(ParseMalformedKinds("bad_json"), std::invalid_argument);
  EXPECT_EQ(ParsePayloadShape("mixed"), PayloadShape::kMixed);
  EXPECT_EQ(ParsePayloadShape("array"), std::nullopt);
}

TEST(SimParseTest, BadOptionsAreRefused) {
  auto make = [](auto tweak) {
    GeneratorOptions o = Options(1);
    tweak(o);
    Generator g(o);
  };
  EXPECT_THROW(make([](GeneratorOptions& o) { o.devices = 0; }), std::invalid_argument);
  EXPECT_THROW(make([](GeneratorOptions& o) { o.malformed_ratio = 1.5; }), std::invalid_argument);
  EXPECT_THROW(make([](GeneratorOptions& o) { o.topic_prefix = "v1/#"; }), std::invalid_argument);
  EXPECT_THROW(make([](GeneratorOptions& o) { o.topic_prefix = "/"; }), std::invalid_argument);
  EXPECT_THROW(make([](GeneratorOptions& o) { o.scenarios.clear(); }), std::invalid_argument);
}

TEST(SimReportTest, CountsByDeviceAndKind) {
  Generator g(Options(1));
  Report r(g.devices());
  for (int i = 0; i < 5; ++i) r.Sent();
  r.Delivered(0, std::nullopt, 3);
  r.Delivered(0, std::nullopt, 3);
  r.Delivered(1, MalformedKind::kOversized, 0);
  r.Failed();
  const json j = r.ToJson({{"seed", 1}});
  EXPECT_EQ(j["seed"], 1);
  EXPECT_EQ(j["published"], 3);
  EXPECT_EQ(j["good"], 2);
  EXPECT_EQ(j["malformed"], 1);
  EXPECT_EQ(j["readings"], 6);
  EXPECT_EQ(j["sent"], 5);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["unconfirmed"], 1);
  EXPECT_EQ(j["malformed_by_kind"]["oversized"], 1);
  EXPECT_EQ(j["malformed_by_kind"]["invalid_json"], 0);
  EXPECT_EQ(j["by_device"]["mfg-0001"]["published"], 2);
  EXPECT_EQ(j["by_device"]["mfg-0001"]["readings"], 6);
  EXPECT_EQ(j["by_device"]["agri-0001"]["malformed"], 1);
  EXPECT_EQ(j["by_device"]["grid-0001"]["published"], 0);
  EXPECT_EQ(j["by_device"].size(), 6u);
}

}  // namespace
}  // namespace strata::sim

TEST(ResponderTest, SucceedsFailsOrStaysSilentByScenarioAndName) {
  using strata::sim::CommandReply;
  using strata::sim::Scenario;
  const std::string cmd = R"({"command_id":"c1","name":"set_speed","params":{"rpm":5},"expires_at":1})";
  auto ok = nlohmann::json::parse(*CommandReply(Scenario::kManufacturing, "mfg-0001", cmd));
  EXPECT_EQ(ok["status"], "SUCCEEDED");
  EXPECT_EQ(ok["result"]["device_id"], "mfg-0001");
  EXPECT_EQ(ok["result"]["params"]["rpm"], 5);
  EXPECT_EQ(nlohmann::json::parse(*CommandReply(Scenario::kGrid, "grid-0001", cmd))["status"], "FAILED");
  EXPECT_EQ(nlohmann::json::parse(*CommandReply(Scenario::kGrid, "grid-0001", R"({"name":"ping"})"))["status"],
            "SUCCEEDED");
  EXPECT_EQ(nlohmann::json::parse(*CommandReply(Scenario::kHealthcare, "health-0001", R"({"name":"fail"})"))["status"],
            "FAILED");
  EXPECT_FALSE(CommandReply(Scenario::kTransportation, "traffic-0001", cmd).has_value());
  EXPECT_FALSE(CommandReply(Scenario::kAgriculture, "agri-0001", R"({"name":"noreply"})").has_value());
  EXPECT_EQ(nlohmann::json::parse(*CommandReply(Scenario::kAgriculture, "agri-0001", "not json"))["status"], "FAILED");
  // A name that is not a string is a command without a name, not a crash.
  EXPECT_EQ(nlohmann::json::parse(*CommandReply(Scenario::kManufacturing, "mfg-0001", R"({"name":42})"))["status"],
            "SUCCEEDED");
}

TEST(ResponderTest, DevicesReportTheDesiredDocumentTheyApplied) {
  using strata::sim::Scenario;
  using strata::sim::TwinReport;
  const std::string desired = R"({"version":3,"desired":{"rpm":1200,"mode":{"eco":true}}})";
  auto reported = TwinReport(Scenario::kManufacturing, desired);
  ASSERT_TRUE(reported.has_value());
  EXPECT_EQ(nlohmann::json::parse(*reported),
            nlohmann::json::parse(R"({"rpm":1200,"mode":{"eco":true},"applied_version":3})"));
  EXPECT_FALSE(TwinReport(Scenario::kTransportation, desired).has_value());
  for (const char* bad : {"", "not json", "[]", R"({"version":"3","desired":{}})", R"({"version":3,"desired":[]})"}) {
    EXPECT_FALSE(TwinReport(Scenario::kGrid, bad).has_value()) << bad;
  }
}
