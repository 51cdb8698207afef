// The rules engine's stateful clauses, on event time: each test feeds readings (and ticks)
// with explicit timestamps and checks the transitions and the timestamps they carry.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <strata/rules/engine.h>

namespace strata::rules {
namespace {

using Kind_ = Transition::Kind;

Reading At(std::int64_t ts, std::vector<std::pair<std::string, Value>> values, std::string device = "m1") {
  return Reading{std::move(device), ts, std::move(values), Value::Null()};
}
Reading Temp(std::int64_t ts, double t, std::string device = "m1") {
  return At(ts, {{"temperature", Value::Double(t)}}, std::move(device));
}

Rule MustCompile(RuleDefinition def) {
  auto r = Rule::Compile(std::move(def));
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

// "Spindle temperature above 85 for 30 s raises MAJOR; below 80 clears it."
RuleDefinition Overheating() {
  RuleDefinition d;
  d.id = "overheat";
  d.alarm_type = "spindle_overheat";
  d.raise = {{Severity::kMajor, "temperature > 85.0"}};
  d.clear = "temperature < 80.0";
  d.for_ms = 30000;
  return d;
}

std::string Describe(const std::vector<Transition>& ts) {
  std::string out;
  for (const auto& t : ts) {
    out += std::string(TransitionName(t.kind)) + " " + std::string(SeverityName(t.severity)) + " @" +
           std::to_string(t.ts_ms) + "; ";
  }
  return out;
}

// Feeds readings one per `step` ms from `from`, with temperature f(ts); collects transitions.
template <typename F>
std::vector<Transition> Feed(const Rule& rule, RuleState& state, std::int64_t from, std::int64_t to,
                             std::int64_t step, F f) {
  std::vector<Transition> all;
  for (std::int64_t ts = from; ts < to; ts += step) {
    for (auto& t : rule.Process(state, Temp(ts, f(ts)))) all.push_back(std::move(t));
  }
  return all;
}

TEST(RulesEngineTest, DurationFiresWhenTheConditionHasHeldForT) {
  const Rule rule = MustCompile(Overheating());
  RuleState state;
  // Above 85 from 7 s on, one reading every 4 s: it has held for 30 s at 37 s, which is the
  // alarm's timestamp although the reading that notices it is at 39 s.
  auto out = Feed(rule, state, 3000, 60000, 4000, [](std::int64_t ts) { return ts >= 7000 ? 90.0 : 70.0; });
  ASSERT_EQ(out.size(), 1u) << Describe(out);
  EXPECT_EQ(out[0].kind, Kind_::kRaised);
  EXPECT_EQ(out[0].ts_ms, 37000);
  EXPECT_EQ(out[0].severity, Severity::kMajor);
  ASSERT_EQ(out[0].values.size(), 1u);
  EXPECT_EQ(out[0].values[0].first, "temperature");
  EXPECT_TRUE(state.active("m1"));
  // Between the thresholds it stays; below 80 it clears at that reading.
  EXPECT_TRUE(rule.Process(state, Temp(61000, 82)).empty());
  out = rule.Process(state, Temp(65000, 79));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
  EXPECT_EQ(out[0].ts_ms, 65000);
  // A dip below the threshold restarts the count.
  RuleState s2;
  out = Feed(rule, s2, 0, 60000, 5000, [](std::int64_t ts) { return ts == 20000 ? 84.0 : 90.0; });
  ASSERT_EQ(out.size(), 1u) << Describe(out);
  EXPECT_EQ(out[0].ts_ms, 25000 + 30000);
}

TEST(RulesEngineTest, DurationFiresOnTickWithNoFurtherReading) {
  const Rule rule = MustCompile(Overheating());
  RuleState state;
  EXPECT_TRUE(rule.Process(state, Temp(1000, 90)).empty());
  EXPECT_TRUE(rule.Tick(state, 30999).empty());
  auto out = rule.Tick(state, 45000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ts_ms, 31000) << "when it had held for 30 s, not when the tick saw it";
  EXPECT_TRUE(rule.Tick(state, 50000).empty()) << "raised once";
}

TEST(RulesEngineTest, AStateRestoredAfterAKillFiresAtTheSameTimestamp) {
  const Rule rule = MustCompile(Overheating());
  auto f = [](std::int64_t ts) { return ts >= 10000 && ts < 90000 ? 91.0 : 75.0; };
  RuleState straight;
  const auto expected = Feed(rule, straight, 0, 120000, 2000, f);
  ASSERT_EQ(expected.size(), 2u) << Describe(expected);

  // The same readings, with the process "killed" 20 s into the DURATION: the state as it was
  // last persisted is all that survives.
  RuleState before;
  auto got = Feed(rule, before, 0, 30000, 2000, f);
  const std::string saved = before.Serialize();
  auto restored = RuleState::Parse(saved);
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (auto& t : Feed(rule, *restored, 30000, 120000, 2000, f)) got.push_back(std::move(t));
  EXPECT_EQ(Describe(got), Describe(expected));
  EXPECT_EQ(got[0].ts_ms, 40000);
  EXPECT_EQ(restored->Serialize(), straight.Serialize()) << "the states converge too";
}

TEST(RulesEngineTest, SeverityEscalatesAndDeescalatesWhileActive) {
  RuleDefinition d;
  d.alarm_type = "grid_frequency";
  d.raise = {{Severity::kMinor, "hz < 49.8 || hz > 50.2"}, {Severity::kCritical, "hz < 49.0 || hz > 51.0"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  auto hz = [](std::int64_t ts, double v) { return At(ts, {{"hz", Value::Double(v)}}, "substation"); };
  EXPECT_TRUE(rule.Process(s, hz(0, 50.0)).empty());
  auto out = rule.Process(s, hz(1000, 50.3));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].severity, Severity::kMinor);
  out = rule.Process(s, hz(2000, 51.5));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kSeverityChanged);
  EXPECT_EQ(out[0].previous, Severity::kMinor);
  EXPECT_EQ(out[0].severity, Severity::kCritical);
  EXPECT_TRUE(rule.Process(s, hz(3000, 51.2)).empty()) << "no transition per message";
  out = rule.Process(s, hz(4000, 50.25));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].severity, Severity::kMinor);
  out = rule.Process(s, hz(5000, 50.0));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
}

TEST(RulesEngineTest, OrAcrossKeysSentInSeparateMessages) {
  RuleDefinition d;
  d.alarm_type = "machine_fault";
  d.raise = {{Severity::kMajor, "temperature > 85.0 || vibration > 3.0"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  EXPECT_TRUE(rule.Process(s, At(0, {{"temperature", Value::Double(70)}})).empty());
  auto out = rule.Process(s, At(1000, {{"vibration", Value::Double(4.5)}}));
  ASSERT_EQ(out.size(), 1u) << "the vibration alone raises it; temperature is the latest known";
  ASSERT_EQ(out[0].values.size(), 2u);
  out = rule.Process(s, At(2000, {{"vibration", Value::Double(1)}}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
  EXPECT_EQ(s.eval_errors(), 1u) << "the first reading: 70 > 85 is false, and no vibration yet";
  // A key no reading has sent is an error the || absorbs when the other side holds, and a
  // counted non-holding condition otherwise.
  RuleState s2;
  EXPECT_EQ(rule.Process(s2, At(0, {{"vibration", Value::Double(5)}})).size(), 1u);
  EXPECT_EQ(s2.eval_errors(), 0u);
  RuleState s3;
  EXPECT_TRUE(rule.Process(s3, At(0, {{"humidity", Value::Double(5)}})).empty());
  EXPECT_EQ(s3.eval_errors(), 1u);
}

TEST(RulesEngineTest, RepeatingNTimesWithinW) {
  RuleDefinition d;
  d.alarm_type = "congested_lane";
  d.raise = {{Severity::kWarning, "speed_kmh < 10.0"}};
  d.times = 3;
  d.within_ms = 60000;
  const Rule rule = MustCompile(d);
  RuleState s;
  auto speed = [](std::int64_t ts, double v) { return At(ts, {{"speed_kmh", Value::Double(v)}}, "lane-4"); };
  EXPECT_TRUE(rule.Process(s, speed(0, 5)).empty());
  EXPECT_TRUE(rule.Process(s, speed(30000, 50)).empty());
  EXPECT_TRUE(rule.Process(s, speed(50000, 5)).empty());
  EXPECT_TRUE(rule.Process(s, speed(70000, 5)).empty()) << "the first slow reading is more than 60 s ago";
  auto out = rule.Process(s, speed(80000, 4));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ts_ms, 80000);
}

TEST(RulesEngineTest, ClearOnlyWhenItDoesNotRecurWithinT) {
  RuleDefinition d;
  d.alarm_type = "spo2_low";
  d.raise = {{Severity::kCritical, "spo2 < 90"}};
  d.clear_after_ms = 60000;
  const Rule rule = MustCompile(d);
  RuleState s;
  auto spo2 = [](std::int64_t ts, std::int64_t v) { return At(ts, {{"spo2", Value::Int(v)}}, "bed-7"); };
  ASSERT_EQ(rule.Process(s, spo2(0, 85)).size(), 1u);
  EXPECT_TRUE(rule.Process(s, spo2(10000, 95)).empty());
  EXPECT_TRUE(rule.Process(s, spo2(40000, 88)).empty()) << "it recurred: still the same alarm, no transition";
  EXPECT_TRUE(rule.Process(s, spo2(50000, 96)).empty());
  EXPECT_TRUE(rule.Process(s, spo2(100000, 97)).empty());
  auto out = rule.Process(s, spo2(115000, 97));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
  EXPECT_EQ(out[0].ts_ms, 110000);
  // And by time alone.
  ASSERT_EQ(rule.Process(s, spo2(200000, 80)).size(), 1u);
  EXPECT_TRUE(rule.Process(s, spo2(201000, 99)).empty());
  out = rule.Tick(s, 400000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ts_ms, 261000);
}

TEST(RulesEngineTest, NoDataForT) {
  RuleDefinition d;
  d.alarm_type = "sensor_silent";
  d.raise = {{Severity::kWarning, ""}};
  d.no_data_ms = 300000;
  const Rule rule = MustCompile(d);
  RuleState s;
  EXPECT_TRUE(rule.Process(s, At(1000, {{"moisture", Value::Double(30)}}, "field-3")).empty());
  EXPECT_TRUE(rule.Tick(s, 300999).empty());
  auto out = rule.Tick(s, 400000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ts_ms, 301000);
  EXPECT_TRUE(rule.Tick(s, 500000).empty());
  out = rule.Process(s, At(510000, {{"moisture", Value::Double(31)}}, "field-3"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
}

TEST(RulesEngineTest, ChangeFromThePreviousValue) {
  RuleDefinition d;
  d.alarm_type = "door_opened";
  d.raise = {{Severity::kWarning, "has(prev.door) && door != prev.door && door == 'open'"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  auto door = [](std::int64_t ts, const char* v) { return At(ts, {{"door", Value::String(v)}}, "gate"); };
  EXPECT_TRUE(rule.Process(s, door(0, "open")).empty()) << "no previous value";
  EXPECT_EQ(rule.Process(s, door(1000, "closed")).size(), 0u);
  EXPECT_EQ(rule.Process(s, door(2000, "open")).size(), 1u);
  EXPECT_EQ(rule.Process(s, door(3000, "open")).size(), 1u) << "no change: it clears";
}

TEST(RulesEngineTest, TumblingWindowAverageWithLatenessAndLateReadings) {
  RuleDefinition d;
  d.alarm_type = "pm25_limit";
  d.raise = {{Severity::kMajor, "pm25_avg > 35.0"}};
  d.window.size_ms = 10000;
  d.window.lateness_ms = 2000;
  d.window.outputs = {{"pm25_avg", Aggregate::kAvg, "pm25"}, {"n", Aggregate::kCount, "pm25"},
                      {"peak", Aggregate::kMax, "pm25"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  auto pm = [](std::int64_t ts, double v) { return At(ts, {{"pm25", Value::Double(v)}}, "station"); };
  EXPECT_TRUE(rule.Process(s, pm(1000, 30)).empty());
  EXPECT_TRUE(rule.Process(s, pm(9000, 50)).empty());
  EXPECT_TRUE(rule.Process(s, pm(11000, 10)).empty()) << "window [0,10 s) stays open for its lateness";
  EXPECT_TRUE(rule.Process(s, pm(5000, 40)).empty()) << "within the lateness: it counts";
  auto out = rule.Process(s, pm(12500, 10));
  ASSERT_EQ(out.size(), 1u) << Describe(out);
  EXPECT_EQ(out[0].ts_ms, 10000) << "at the window's end";
  ASSERT_EQ(out[0].values.size(), 3u);
  EXPECT_DOUBLE_EQ(out[0].values[0].second.double_value(), 40.0);
  EXPECT_EQ(out[0].values[1].second.int_value(), 3);
  EXPECT_DOUBLE_EQ(out[0].values[2].second.double_value(), 50.0);
  EXPECT_EQ(rule.Process(s, pm(3000, 500)).size(), 0u);
  EXPECT_EQ(s.late_readings(), 1u) << "after its window closed: counted, not used";
  out = rule.Tick(s, 40000);
  ASSERT_EQ(out.size(), 1u) << "the next window closes by time and clears";
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
  EXPECT_EQ(out[0].ts_ms, 20000);
}

TEST(RulesEngineTest, HoppingWindows) {
  RuleDefinition d;
  d.alarm_type = "soil_dry";
  d.raise = {{Severity::kMinor, "moisture_min < 20.0"}};
  d.window.size_ms = 10000;
  d.window.hop_ms = 5000;
  d.window.outputs = {{"moisture_min", Aggregate::kMin, "moisture"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  auto m = [](std::int64_t ts, double v) { return At(ts, {{"moisture", Value::Double(v)}}, "field-3"); };
  EXPECT_TRUE(rule.Process(s, m(6000, 15)).empty());  // in [0,10) and [5,15)
  auto out = rule.Process(s, m(10000, 30));            // closes [0,10): min 15
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ts_ms, 10000);
  out = rule.Process(s, m(15000, 30));                 // closes [5,15): min 15, still raised
  EXPECT_TRUE(out.empty()) << Describe(out);
  out = rule.Process(s, m(20000, 30));                 // closes [10,20): min 30
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Kind_::kCleared);
  EXPECT_EQ(out[0].ts_ms, 20000);
}

TEST(RulesEngineTest, BadRulesNameTheField) {
  RuleDefinition d = Overheating();
  d.raise = {{Severity::kMajor, "temperature > 85.0"}, {Severity::kCritical, "temperature >"}};
  auto r = Rule::Compile(d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().substr(0, 26), "raise[1].condition: 1:14: ") << r.status();
  d = Overheating();
  d.clear = "temperature < 'x' + 1";
  r = Rule::Compile(d);
  EXPECT_NE(r.status().message().find("clear: 1:19: found no matching overload"), std::string::npos) << r.status();
  d = Overheating();
  d.raise[0].condition = "temperature * 2.0";
  r = Rule::Compile(d);
  EXPECT_NE(r.status().message().find("must be bool"), std::string::npos) << r.status();
  d = Overheating();
  d.raise[0].condition = "[1, 2].all(x, x > temperature)";
  EXPECT_EQ(Rule::Compile(d).status().code(), absl::StatusCode::kUnimplemented);
  d = Overheating();
  d.times = 3;
  EXPECT_FALSE(Rule::Compile(d).ok()) << "times without within";
  d = Overheating();
  d.window.size_ms = 1000;
  d.window.hop_ms = 10;
  d.window.outputs = {{"a", Aggregate::kAvg, "temperature"}};
  EXPECT_NE(Rule::Compile(d).status().message().find("windows open at once"), std::string::npos);
  d = Overheating();
  d.window.size_ms = 1000;
  d.window.outputs = {{"a", Aggregate::kAvg, "temperature"}};
  EXPECT_NE(Rule::Compile(d).status().message().find("undeclared reference to 'temperature'"), std::string::npos)
      << "a window rule reads its outputs, not the reading";
  d = Overheating();
  d.raise.push_back({Severity::kMajor, "true"});
  EXPECT_FALSE(Rule::Compile(d).ok()) << "two levels of one severity";
  EXPECT_FALSE(RuleState::Parse("{\"format\": 99}").ok());
  EXPECT_FALSE(RuleState::Parse("not json").ok());
}

TEST(RulesEngineTest, TransitionsDoNotDependOnWhetherTheCallerTicked) {
  // The same readings, once with ticks in the gaps and once without: the same transitions at
  // the same timestamps.
  RuleDefinition spo2;
  spo2.alarm_type = "spo2_low";
  spo2.raise = {{Severity::kCritical, "spo2 < 90"}};
  spo2.clear_after_ms = 60000;
  RuleDefinition silent;
  silent.alarm_type = "silent";
  silent.raise = {{Severity::kWarning, ""}};
  silent.no_data_ms = 30000;
  RuleDefinition escalate;
  escalate.alarm_type = "hot";
  escalate.raise = {{Severity::kMajor, "spo2 < 90"}, {Severity::kCritical, "spo2 < 80"}};
  escalate.for_ms = 30000;
  for (const RuleDefinition& def : {spo2, silent, escalate}) {
    const Rule rule = MustCompile(def);
    const std::vector<std::pair<std::int64_t, std::int64_t>> readings = {{0, 85}, {1000, 95}, {70000, 75}, {150000, 85}};
    RuleState ticked, unticked;
    std::vector<Transition> a, b;
    for (const auto& [ts, v] : readings) {
      for (std::int64_t t = ts - 9000; t > 0 && t < ts; t += 3000) {
        for (auto& x : rule.Tick(ticked, t)) a.push_back(std::move(x));
      }
      for (auto& x : rule.Process(ticked, At(ts, {{"spo2", Value::Int(v)}}))) a.push_back(std::move(x));
      for (auto& x : rule.Process(unticked, At(ts, {{"spo2", Value::Int(v)}}))) b.push_back(std::move(x));
    }
    EXPECT_EQ(Describe(a), Describe(b)) << def.alarm_type;
    EXPECT_FALSE(a.empty()) << def.alarm_type;
  }
}

TEST(RulesEngineTest, StatesWithInfinitiesAndOddTimesRoundTripOrAreRefused) {
  RuleDefinition d;
  d.alarm_type = "sum";
  d.raise = {{Severity::kMajor, "total > 1.0"}};
  d.window.size_ms = 10000;
  d.window.outputs = {{"total", Aggregate::kSum, "x"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  EXPECT_TRUE(rule.Process(s, At(1000, {{"x", Value::Double(INFINITY)}})).empty());
  auto again = RuleState::Parse(s.Serialize());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->Serialize(), s.Serialize());
  auto out = rule.Tick(*again, 20000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::isinf(out[0].values[0].second.double_value()));
  // A reading at a time no reading can have is counted, not used.
  RuleState s2;
  EXPECT_TRUE(rule.Process(s2, At(-5, {{"x", Value::Double(2)}})).empty());
  EXPECT_EQ(s2.late_readings(), 1u);
  std::string bad = s.Serialize();
  const auto at = bad.find("\"closed_until\":");
  ASSERT_NE(at, std::string::npos);
  bad.replace(at, std::string("\"closed_until\":").size(), "\"closed_until\":-7,\"x\":");
  EXPECT_FALSE(RuleState::Parse(bad).ok()) << bad;
  // Window outputs may not take a built-in name.
  d.window.outputs = {{"ts", Aggregate::kSum, "x"}};
  EXPECT_FALSE(Rule::Compile(d).ok());
}

TEST(RulesEngineTest, AWindowEndedBeforeTheWatermarkIsLateEvenIfItNeverOpened) {
  RuleDefinition d;
  d.alarm_type = "avg";
  d.raise = {{Severity::kMajor, "avg > 50.0"}};
  d.window.size_ms = 60000;
  d.window.outputs = {{"avg", Aggregate::kAvg, "x"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  rule.Process(s, At(0, {{"x", Value::Double(10)}}));
  rule.Process(s, At(600000, {{"x", Value::Double(10)}}));
  EXPECT_TRUE(rule.Process(s, At(120000, {{"x", Value::Double(99)}})).empty());
  EXPECT_EQ(s.late_readings(), 1u);
}

TEST(RulesEngineTest, ManyDevicesAreBoundedAndIndependent) {
  RuleDefinition d;
  d.alarm_type = "hot";
  d.raise = {{Severity::kMajor, "t > 1"}};
  const Rule rule = MustCompile(d);
  RuleState s;
  std::size_t raised = 0;
  for (std::size_t i = 0; i < Rule::kMaxDevices + 10; ++i) {
    raised += rule.Process(s, At(0, {{"t", Value::Int(i % 2 == 0 ? 5 : 0)}}, "d" + std::to_string(i))).size();
  }
  EXPECT_EQ(s.devices(), Rule::kMaxDevices);
  EXPECT_EQ(s.refused_devices(), 10u);
  EXPECT_EQ(raised, Rule::kMaxDevices / 2);
}

}  // namespace
}  // namespace strata::rules
