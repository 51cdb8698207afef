// The stateful part of a rule (docs/rules.md, "Stateful clauses"): per device, what the
// conditions read, whether they hold and since when, and the alarm's state; every decision
// is taken from event time and the caller's `now`, never from a clock of our own.
#include <strata/rules/engine.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

namespace strata::rules {

namespace {

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::min();
// The event times a rule takes: those of the telemetry model (0 to 9999-12-31 UTC). With
// every span at most a year, no sum or difference of them overflows.
constexpr std::int64_t kMaxTs = 253402300799999;
bool InRange(std::int64_t ts) { return ts >= 0 && ts <= kMaxTs; }
bool TimeOrNever(std::int64_t ts) { return ts == kNever || InRange(ts); }
// What a transition carries of the values it read: bounded, whatever the readings hold.
constexpr std::size_t kMaxTransitionValues = 16;
constexpr std::size_t kMaxValueBytes = 256;
constexpr std::size_t kMaxKeysPerDevice = 256;
constexpr std::int64_t kMaxSpanMs = std::int64_t{366} * 24 * 3600 * 1000;

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

std::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::kCritical: return "CRITICAL";
    case Severity::kMajor: return "MAJOR";
    case Severity::kMinor: return "MINOR";
    case Severity::kWarning: return "WARNING";
    case Severity::kIndeterminate: return "INDETERMINATE";
  }
  return "INDETERMINATE";
}

std::optional<Severity> ParseSeverity(std::string_view name) {
  for (Severity s : {Severity::kCritical, Severity::kMajor, Severity::kMinor, Severity::kWarning,
                     Severity::kIndeterminate}) {
    if (SeverityName(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view AggregateName(Aggregate a) {
  switch (a) {
    case Aggregate::kAvg: return "AVG";
    case Aggregate::kMin: return "MIN";
    case Aggregate::kMax: return "MAX";
    case Aggregate::kSum: return "SUM";
    case Aggregate::kCount: return "COUNT";
    case Aggregate::kFirst: return "FIRST";
    case Aggregate::kLast: return "LAST";
  }
  return "AVG";
}

std::optional<Aggregate> ParseAggregate(std::string_view name) {
  for (Aggregate a : {Aggregate::kAvg, Aggregate::kMin, Aggregate::kMax, Aggregate::kSum, Aggregate::kCount,
                      Aggregate::kFirst, Aggregate::kLast}) {
    if (AggregateName(a) == name) return a;
  }
  return std::nullopt;
}

std::string_view TransitionName(Transition::Kind k) {
  switch (k) {
    case Transition::Kind::kRaised: return "RAISED";
    case Transition::Kind::kSeverityChanged: return "SEVERITY_CHANGED";
    case Transition::Kind::kCleared: return "CLEARED";
  }
  return "RAISED";
}

// One window's running aggregates, one per output.
struct Accumulator {
  double sum = 0;
  double min = 0, max = 0;
  std::uint64_t numbers = 0;  // numeric values seen (AVG, MIN, MAX, SUM)
  std::uint64_t count = 0;    // values seen (COUNT)
  Value first, last;
  std::int64_t first_ts = 0, last_ts = 0;
};

struct DeviceRuleState {
  std::map<std::string, Value, std::less<>> latest;  // the latest value of each key
  std::map<std::string, Value, std::less<>> prev;    // the one before it
  std::int64_t last_ts = kNever;                     // the newest reading's event time

  bool active = false;
  Severity severity = Severity::kMajor;
  bool no_data = false;                  // active because the device went silent

  std::int64_t holding_since = kNever;   // a raise condition has held since (for_ms)
  Severity holding_severity = Severity::kMajor;
  std::deque<std::int64_t> hits;         // when a raise condition held (times within)
  std::int64_t clearing_since = kNever;  // the clear has held since (clear_after_ms)
  std::vector<std::pair<std::string, Value>> values;  // what the conditions last read

  std::map<std::int64_t, std::vector<Accumulator>> windows;  // open windows by start
  std::int64_t closed_until = kNever;    // every window that ends at or before this is closed
};

RuleState::RuleState() = default;
RuleState::~RuleState() = default;
RuleState::RuleState(const RuleState&) = default;
RuleState& RuleState::operator=(const RuleState&) = default;
RuleState::RuleState(RuleState&&) noexcept = default;
RuleState& RuleState::operator=(RuleState&&) noexcept = default;

std::size_t RuleState::devices() const { return devices_.size(); }

bool RuleState::active(const std::string& device_id) const {
  auto it = devices_.find(device_id);
  return it != devices_.end() && it->second.active;
}

// ---- serialization ------------------------------------------------------------------------

namespace {

using nlohmann::json;

constexpr int kStateFormat = 1;

std::string Hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string Unhex(const std::string& s) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string out;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<char>(nibble(s[i]) << 4 | nibble(s[i + 1])));
  return out;
}

// A reading's value, with its kind: ["i","-5"], ["u","5"], ["d",1.5] or ["d","NaN"], ["s",..],
// ["b","hex"], ["t",true], ["n"]. Lists and maps are not readings' values; they are kept as
// null.
json ValueToJson(const Value& v) {
  switch (v.kind()) {
    case Kind::kBool: return json::array({"t", v.bool_value()});
    case Kind::kInt: return json::array({"i", std::to_string(v.int_value())});
    case Kind::kUint: return json::array({"u", std::to_string(v.uint_value())});
    case Kind::kDouble: {
      const double d = v.double_value();
      if (std::isnan(d)) return json::array({"d", "NaN"});
      if (std::isinf(d)) return json::array({"d", d > 0 ? "+Inf" : "-Inf"});
      return json::array({"d", d});
    }
    case Kind::kString: return json::array({"s", v.string_value()});
    case Kind::kBytes: return json::array({"b", Hex(v.bytes_value())});
    case Kind::kError: return json::array({"e", v.error()});
    default: return json::array({"n"});
  }
}

Value ValueFromJson(const json& j) {
  const std::string kind = j.at(0).get<std::string>();
  if (kind == "t") return Value::Bool(j.at(1).get<bool>());
  if (kind == "i") return Value::Int(std::stoll(j.at(1).get<std::string>()));
  if (kind == "u") return Value::Uint(std::stoull(j.at(1).get<std::string>()));
  if (kind == "d") {
    if (j.at(1).is_string()) {
      const std::string s = j.at(1).get<std::string>();
      if (s == "NaN") return Value::Double(std::numeric_limits<double>::quiet_NaN());
      return Value::Double(s == "+Inf" ? std::numeric_limits<double>::infinity()
                                       : -std::numeric_limits<double>::infinity());
    }
    return Value::Double(j.at(1).get<double>());
  }
  if (kind == "s") return Value::String(j.at(1).get<std::string>());
  if (kind == "b") return Value::BytesOf(Unhex(j.at(1).get<std::string>()));
  if (kind == "e") return Value::Err(j.at(1).get<std::string>());
  return Value::Null();
}

json MapToJson(const std::map<std::string, Value, std::less<>>& m) {
  json out = json::object();
  for (const auto& [k, v] : m) out[k] = ValueToJson(v);
  return out;
}

std::map<std::string, Value, std::less<>> MapFromJson(const json& j) {
  std::map<std::string, Value, std::less<>> out;
  for (const auto& [k, v] : j.items()) out.emplace(k, ValueFromJson(v));
  return out;
}

}  // namespace

std::string RuleState::Serialize() const {
  json devices = json::object();  // an object: its keys come out in order
  for (const auto& [id, d] : devices_) {
    json values = json::array();
    for (const auto& [k, v] : d.values) values.push_back(json::array({k, ValueToJson(v)}));
    json windows = json::array();
    for (const auto& [start, accs] : d.windows) {
      json list = json::array();
      for (const Accumulator& a : accs) {
        list.push_back({{"sum", ValueToJson(Value::Double(a.sum))}, {"min", ValueToJson(Value::Double(a.min))},
                        {"max", ValueToJson(Value::Double(a.max))}, {"numbers", a.numbers}, {"count", a.count},
                        {"first", ValueToJson(a.first)}, {"last", ValueToJson(a.last)}, {"first_ts", a.first_ts},
                        {"last_ts", a.last_ts}});
      }
      windows.push_back({{"start", start}, {"outputs", list}});
    }
    devices[id] = {{"latest", MapToJson(d.latest)},
                   {"prev", MapToJson(d.prev)},
                   {"last_ts", d.last_ts},
                   {"active", d.active},
                   {"severity", SeverityName(d.severity)},
                   {"no_data", d.no_data},
                   {"holding_since", d.holding_since},
                   {"holding_severity", SeverityName(d.holding_severity)},
                   {"hits", std::vector<std::int64_t>(d.hits.begin(), d.hits.end())},
                   {"clearing_since", d.clearing_since},
                   {"values", values},
                   {"windows", windows},
                   {"closed_until", d.closed_until}};
  }
  json j = {{"format", kStateFormat}, {"late", late_}, {"errors", errors_}, {"refused", refused_},
            {"devices", devices}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<RuleState> RuleState::Parse(std::string_view serialized) {
  RuleState s;
  if (serialized.empty()) return s;
  try {
    const json j = json::parse(serialized);
    if (j.at("format").get<int>() != kStateFormat) {
      return absl::InvalidArgumentError("rule state of format " + j.at("format").dump() + "; this release reads " +
                                        std::to_string(kStateFormat));
    }
    s.late_ = j.at("late").get<std::uint64_t>();
    s.errors_ = j.at("errors").get<std::uint64_t>();
    s.refused_ = j.at("refused").get<std::uint64_t>();
    for (const auto& [id, dj] : j.at("devices").items()) {
      DeviceRuleState d;
      d.latest = MapFromJson(dj.at("latest"));
      d.prev = MapFromJson(dj.at("prev"));
      d.last_ts = dj.at("last_ts").get<std::int64_t>();
      d.active = dj.at("active").get<bool>();
      d.severity = ParseSeverity(dj.at("severity").get<std::string>()).value_or(Severity::kIndeterminate);
      d.no_data = dj.at("no_data").get<bool>();
      d.holding_since = dj.at("holding_since").get<std::int64_t>();
      d.holding_severity =
          ParseSeverity(dj.at("holding_severity").get<std::string>()).value_or(Severity::kIndeterminate);
      for (const auto& h : dj.at("hits")) d.hits.push_back(h.get<std::int64_t>());
      d.clearing_since = dj.at("clearing_since").get<std::int64_t>();
      for (const auto& v : dj.at("values")) d.values.emplace_back(v.at(0).get<std::string>(), ValueFromJson(v.at(1)));
      for (const auto& w : dj.at("windows")) {
        std::vector<Accumulator> accs;
        for (const auto& a : w.at("outputs")) {
          Accumulator acc;
          acc.sum = ValueFromJson(a.at("sum")).double_value();
          acc.min = ValueFromJson(a.at("min")).double_value();
          acc.max = ValueFromJson(a.at("max")).double_value();
          acc.numbers = a.at("numbers").get<std::uint64_t>();
          acc.count = a.at("count").get<std::uint64_t>();
          acc.first = ValueFromJson(a.at("first"));
          acc.last = ValueFromJson(a.at("last"));
          acc.first_ts = a.at("first_ts").get<std::int64_t>();
          acc.last_ts = a.at("last_ts").get<std::int64_t>();
          accs.push_back(std::move(acc));
        }
        d.windows.emplace(w.at("start").get<std::int64_t>(), std::move(accs));
      }
      d.closed_until = dj.at("closed_until").get<std::int64_t>();
      bool times_ok = TimeOrNever(d.last_ts) && TimeOrNever(d.holding_since) && TimeOrNever(d.clearing_since) &&
                      TimeOrNever(d.closed_until) && d.hits.size() <= 10000 && d.windows.size() <= Rule::kMaxOpenWindows;
      for (std::int64_t h : d.hits) times_ok = times_ok && InRange(h);
      for (const auto& [start, accs] : d.windows) times_ok = times_ok && InRange(start);
      if (!times_ok) return absl::InvalidArgumentError("rule state of device '" + id + "': a time out of range");
      s.devices_.emplace(id, std::move(d));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("unreadable rule state: ") + e.what());
  }
  return s;
}

// ---- compiling ----------------------------------------------------------------------------

namespace {

// Where a condition's variable comes from.
struct Slot {
  enum class Source : std::uint8_t { kKey, kAttr, kPrev, kReading, kDeviceId, kTs, kOutput };
  Source source = Source::kKey;
  std::string key;   // kKey: the reading's key
  std::size_t output = 0;
};

struct CompiledExpr {
  Program program;
  std::vector<Slot> slots;
};

}  // namespace

struct Rule::Compiled {
  std::vector<std::pair<Severity, CompiledExpr>> raise;  // most severe first
  std::optional<CompiledExpr> clear;
  bool windowed = false;
};

namespace {

absl::StatusOr<CompiledExpr> CompileCondition(const std::string& field, const std::string& source,
                                              const RuleDefinition& def) {
  const Type string_t = Type::Of(Type::Tag::kString);
  Env env;
  env.Declare("device_id", string_t).Declare("ts", Type::Of(Type::Tag::kInt));
  const bool windowed = def.window.size_ms > 0;
  // A window's conditions read its outputs; the device's attributes are a reading's.
  if (!windowed) env.Declare("attr", Type::Map(string_t, string_t));
  if (windowed) {
    for (const auto& o : def.window.outputs) {
      const bool counted = o.fn == Aggregate::kCount;
      const bool numeric = o.fn != Aggregate::kFirst && o.fn != Aggregate::kLast;
      env.Declare(o.name, counted ? Type::Of(Type::Tag::kInt) : (numeric ? Type::Of(Type::Tag::kDouble) : Type::Dyn()));
    }
  } else {
    env.Declare("prev", Type::Map(string_t, Type::Dyn())).Declare("reading", Type::Map(string_t, Type::Dyn()));
    env.UndeclaredAreDyn();
  }
  auto program = Program::Compile(source, env);
  if (!program.ok()) return absl::Status(program.status().code(), field + ": " + std::string(program.status().message()));
  if (program->result_type().tag != Type::Tag::kBool && program->result_type().tag != Type::Tag::kDyn) {
    return absl::InvalidArgumentError(field + ": the condition is of type " + program->result_type().Name() +
                                      "; it must be bool");
  }
  CompiledExpr c{std::move(*program), {}};
  for (const std::string& name : c.program.variables()) {
    Slot s;
    if (name == "attr") s.source = Slot::Source::kAttr;
    else if (name == "device_id") s.source = Slot::Source::kDeviceId;
    else if (name == "ts") s.source = Slot::Source::kTs;
    else if (!windowed && name == "prev") s.source = Slot::Source::kPrev;
    else if (!windowed && name == "reading") s.source = Slot::Source::kReading;
    else if (windowed) {
      s.source = Slot::Source::kOutput;
      for (std::size_t i = 0; i < def.window.outputs.size(); ++i) {
        if (def.window.outputs[i].name == name) s.output = i;
      }
    } else {
      s.source = Slot::Source::kKey;
      s.key = name;
    }
    c.slots.push_back(std::move(s));
  }
  return c;
}

absl::Status Check(bool ok, const std::string& message) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(message);
}

}  // namespace

absl::StatusOr<Rule> Rule::Compile(RuleDefinition def) {
  auto within = [](std::int64_t v) { return v >= 0 && v <= kMaxSpanMs; };
  if (auto s = Check(!def.alarm_type.empty() && def.alarm_type.size() <= 128, "alarm_type: 1 to 128 bytes"); !s.ok()) {
    return s;
  }
  const std::initializer_list<std::pair<std::int64_t, const char*>> spans = {
      {def.for_ms, "for_ms"},           {def.within_ms, "within_ms"},     {def.clear_after_ms, "clear_after_ms"},
      {def.no_data_ms, "no_data_ms"},   {def.window.size_ms, "window.size_ms"}, {def.window.hop_ms, "window.hop_ms"},
      {def.window.lateness_ms, "window.lateness_ms"}};
  for (const auto& span : spans) {
    if (!within(span.first)) return absl::InvalidArgumentError(std::string(span.second) + ": 0 to a year in milliseconds");
  }
  if ((def.times > 0) != (def.within_ms > 0)) {
    return absl::InvalidArgumentError("times and within_ms go together: at least `times` readings within `within_ms`");
  }
  if (def.times > 10000) return absl::InvalidArgumentError("times: at most 10000");
  if (def.for_ms > 0 && def.times > 0) return absl::InvalidArgumentError("for_ms and times: one or the other");
  if (def.no_data_ms > 0) {
    if (def.raise.size() != 1 || !def.raise[0].condition.empty() || !def.clear.empty() || def.for_ms > 0 ||
        def.times > 0 || def.window.size_ms > 0) {
      return absl::InvalidArgumentError(
          "no_data_ms: a no-data rule has one raise level with no condition (its severity), and no clear, for_ms, "
          "times or window; the next reading clears it");
    }
  } else if (def.raise.empty()) {
    return absl::InvalidArgumentError("raise: at least one level (a severity and a condition)");
  }
  if (def.raise.size() > 5) return absl::InvalidArgumentError("raise: at most one level per severity (5)");
  if (def.window.size_ms > 0) {
    auto& w = def.window;
    if (w.hop_ms == 0) w.hop_ms = w.size_ms;
    if (w.hop_ms > w.size_ms) return absl::InvalidArgumentError("window.hop_ms: at most window.size_ms");
    if ((w.size_ms + w.lateness_ms) / w.hop_ms > static_cast<std::int64_t>(kMaxOpenWindows)) {
      return absl::InvalidArgumentError("window: (size_ms + lateness_ms) / hop_ms must be at most " +
                                        std::to_string(kMaxOpenWindows) + " (windows open at once)");
    }
    if (w.outputs.empty() || w.outputs.size() > 32) return absl::InvalidArgumentError("window.outputs: 1 to 32");
    std::set<std::string> names;
    for (std::size_t i = 0; i < w.outputs.size(); ++i) {
      const auto& o = w.outputs[i];
      const std::string field = "window.outputs[" + std::to_string(i) + "]";
      auto probe = Program::Compile(o.name, Env{}.UndeclaredAreDyn());
      if (o.name.empty() || !probe.ok() || probe->variables().size() != 1 || probe->variables()[0] != o.name) {
        return absl::InvalidArgumentError(field + ".name: an identifier");
      }
      if (!names.insert(o.name).second) return absl::InvalidArgumentError(field + ".name: repeated");
      for (const char* reserved : {"attr", "device_id", "ts", "prev", "reading"}) {
        if (o.name == reserved) return absl::InvalidArgumentError(field + ".name: '" + o.name + "' is a built-in name");
      }
      if (o.key.empty()) return absl::InvalidArgumentError(field + ".key: the reading's key to aggregate");
    }
  } else if (def.window.hop_ms != 0 || def.window.lateness_ms != 0 || !def.window.outputs.empty()) {
    return absl::InvalidArgumentError("window: size_ms is required");
  }

  auto compiled = std::make_shared<Compiled>();
  compiled->windowed = def.window.size_ms > 0;
  std::set<Severity> seen;
  for (std::size_t i = 0; i < def.raise.size(); ++i) {
    const auto& level = def.raise[i];
    if (!seen.insert(level.severity).second) {
      return absl::InvalidArgumentError("raise[" + std::to_string(i) + "]: a second level of severity " +
                                        std::string(SeverityName(level.severity)));
    }
    if (def.no_data_ms > 0) continue;
    auto c = CompileCondition("raise[" + std::to_string(i) + "].condition", level.condition, def);
    if (!c.ok()) return c.status();
    compiled->raise.emplace_back(level.severity, std::move(*c));
  }
  std::sort(compiled->raise.begin(), compiled->raise.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  if (!def.clear.empty()) {
    auto c = CompileCondition("clear", def.clear, def);
    if (!c.ok()) return c.status();
    compiled->clear = std::move(*c);
  }
  Rule r;
  r.def_ = std::move(def);
  r.compiled_ = std::move(compiled);
  return r;
}

// ---- evaluating ---------------------------------------------------------------------------

namespace {

Value MapValue(const std::map<std::string, Value, std::less<>>& m) {
  MapEntries entries;
  entries.reserve(m.size());
  for (const auto& [k, v] : m) entries.emplace_back(Value::String(k), v);
  return Value::MapOf(std::move(entries));
}

struct Inputs {
  const std::string& device_id;
  std::int64_t ts;
  const Value& attributes;
  const DeviceRuleState& d;
  const std::vector<Value>* outputs;  // a closed window's; null for readings
};

Value SlotValue(const Slot& s, const Inputs& in) {
  switch (s.source) {
    case Slot::Source::kAttr: return in.attributes.is(Kind::kMap) ? in.attributes : Value::MapOf({});
    case Slot::Source::kDeviceId: return Value::String(in.device_id);
    case Slot::Source::kTs: return Value::Int(in.ts);
    case Slot::Source::kPrev: return MapValue(in.d.prev);
    case Slot::Source::kReading: return MapValue(in.d.latest);
    case Slot::Source::kOutput: return in.outputs != nullptr ? (*in.outputs)[s.output] : Value::Err("no window");
    case Slot::Source::kKey: {
      auto it = in.d.latest.find(s.key);
      return it != in.d.latest.end() ? it->second : Value::Err("no such key: " + s.key);
    }
  }
  return Value::Err("no such variable");
}

// Whether the condition holds (an error does not, and is counted).
bool Holds(const CompiledExpr& c, const Inputs& in, std::uint64_t& errors) {
  Value small[8];
  std::vector<Value> big;
  Value* slots = small;
  if (c.slots.size() > 8) {
    big.resize(c.slots.size());
    slots = big.data();
  }
  for (std::size_t i = 0; i < c.slots.size(); ++i) slots[i] = SlotValue(c.slots[i], in);
  const Value r = c.program.Eval(std::span<const Value>(slots, c.slots.size()));
  if (r.is(Kind::kBool)) return r.bool_value();
  ++errors;
  return false;
}

Transition Make(Transition::Kind kind, const std::string& device, const std::string& type, Severity sev,
                std::int64_t ts, const std::vector<std::pair<std::string, Value>>& values) {
  Transition t;
  t.kind = kind;
  t.device_id = device;
  t.alarm_type = type;
  t.severity = sev;
  t.previous = sev;
  t.ts_ms = ts;
  t.values = values;
  return t;
}

}  // namespace

std::vector<std::pair<std::string, Value>> Rule::ValuesOf(const DeviceRuleState& d) const {
  // What the conditions read now: the device's latest values of their keys, or the closed
  // window's outputs; bounded, whatever the readings hold.
  std::vector<std::pair<std::string, Value>> out;
  if (compiled_->windowed) {  // every output of the window, whether a condition names it or not
    for (const auto& kv : d.values) {
      if (!kv.second.is_error() && out.size() < kMaxTransitionValues) out.push_back(kv);
    }
    return out;
  }
  auto add = [&](const CompiledExpr& c) {
    for (std::size_t i = 0; i < c.slots.size() && out.size() < kMaxTransitionValues; ++i) {
      const Slot& slot = c.slots[i];
      const std::string& name = c.program.variables()[i];
      const Value* v = nullptr;
      if (slot.source == Slot::Source::kKey) {
        auto it = d.latest.find(slot.key);
        if (it != d.latest.end()) v = &it->second;
      } else if (slot.source == Slot::Source::kOutput) {
        auto it = std::find_if(d.values.begin(), d.values.end(), [&](const auto& kv) { return kv.first == name; });
        if (it != d.values.end() && !it->second.is_error()) v = &it->second;
      }
      if (v == nullptr || std::any_of(out.begin(), out.end(), [&](const auto& kv) { return kv.first == name; })) continue;
      out.emplace_back(name, v->is(Kind::kString) && v->string_value().size() > kMaxValueBytes
                                 ? Value::String(v->string_value().substr(0, kMaxValueBytes))
                                 : *v);
    }
  };
  for (const auto& level : compiled_->raise) add(level.second);
  if (compiled_->clear) add(*compiled_->clear);
  return out;
}

void Rule::Evaluate(DeviceRuleState& d, const std::string& device_id, std::int64_t ts, const Value& attributes,
                    RuleState& state, std::vector<Transition>& out) const {
  // Called with d.values already holding a closed window's outputs when windowed.
  const std::vector<Value>* outputs = nullptr;
  std::vector<Value> window_outputs;
  if (compiled_->windowed) {
    for (const auto& o : def_.window.outputs) {
      auto it = std::find_if(d.values.begin(), d.values.end(), [&](const auto& v) { return v.first == o.name; });
      window_outputs.push_back(it != d.values.end() ? it->second : Value::Err("no value for " + o.name));
    }
    outputs = &window_outputs;
  }
  const Inputs in{device_id, ts, attributes, d, outputs};
  std::optional<Severity> level;
  for (const auto& [sev, cond] : compiled_->raise) {
    if (Holds(cond, in, state.errors_)) {
      level = sev;
      break;
    }
  }
  const bool clear_holds = compiled_->clear ? Holds(*compiled_->clear, in, state.errors_) : !level;
  const std::string& type = def_.alarm_type;

  if (!d.active) {
    if (!level) {
      // A condition that held for T up to this reading fired at T, even if nobody looked then.
      if (def_.for_ms > 0 && d.holding_since != kNever && ts - d.holding_since >= def_.for_ms) {
        d.active = true;
        d.severity = d.holding_severity;
        out.push_back(Make(Transition::Kind::kRaised, device_id, type, d.severity, d.holding_since + def_.for_ms,
                           ValuesOf(d)));
      } else {
        d.holding_since = kNever;
        return;
      }
    } else if (def_.for_ms > 0) {
      if (d.holding_since == kNever) d.holding_since = ts;
      d.holding_severity = *level;
      if (ts - d.holding_since < def_.for_ms) return;
      d.active = true;
      d.severity = *level;
      out.push_back(Make(Transition::Kind::kRaised, device_id, type, *level, d.holding_since + def_.for_ms, ValuesOf(d)));
      return;
    } else if (def_.times > 0) {
      d.hits.push_back(ts);
      while (!d.hits.empty() && d.hits.front() <= ts - def_.within_ms) d.hits.pop_front();
      while (d.hits.size() > def_.times) d.hits.pop_front();
      if (d.hits.size() < def_.times) return;
      d.hits.clear();
      d.active = true;
      d.severity = *level;
      out.push_back(Make(Transition::Kind::kRaised, device_id, type, *level, ts, ValuesOf(d)));
      return;
    } else {
      d.active = true;
      d.severity = *level;
      out.push_back(Make(Transition::Kind::kRaised, device_id, type, *level, ts, ValuesOf(d)));
      return;
    }
  }

  // Active: the severity follows the conditions; the clear may have to hold for a while.
  if (level) {
    d.clearing_since = kNever;
    d.holding_since = kNever;
    if (*level != d.severity) {
      Transition t = Make(Transition::Kind::kSeverityChanged, device_id, type, *level, ts, ValuesOf(d));
      t.previous = d.severity;
      d.severity = *level;
      out.push_back(std::move(t));
    }
    return;
  }
  if (!clear_holds) {
    d.clearing_since = kNever;  // between the thresholds: it stays as it is
    return;
  }
  if (def_.clear_after_ms > 0) {
    if (d.clearing_since == kNever) d.clearing_since = ts;
    if (ts - d.clearing_since < def_.clear_after_ms) return;
    ts = d.clearing_since + def_.clear_after_ms;
  }
  d.active = false;
  d.holding_since = kNever;
  d.clearing_since = kNever;
  out.push_back(Make(Transition::Kind::kCleared, device_id, type, d.severity, ts, ValuesOf(d)));
}

void Rule::CloseWindows(DeviceRuleState& d, const std::string& device_id, std::int64_t watermark, RuleState& state,
                        std::vector<Transition>& out) const {
  const auto& w = def_.window;
  // Whatever ends at or before the watermark less the lateness is closed, opened or not: a
  // reading for it is late.
  if (watermark != kNever) d.closed_until = std::max(d.closed_until, watermark - w.lateness_ms);
  while (!d.windows.empty()) {
    auto it = d.windows.begin();
    const std::int64_t end = it->first + w.size_ms;
    if (watermark == kNever || end > watermark - w.lateness_ms) break;
    std::vector<std::pair<std::string, Value>> outputs;
    it->second.resize(w.outputs.size());  // a state of the rule before its outputs changed
    for (std::size_t i = 0; i < w.outputs.size(); ++i) {
      const Accumulator& a = it->second[i];
      Value v;
      switch (w.outputs[i].fn) {
        case Aggregate::kAvg: v = a.numbers ? Value::Double(a.sum / static_cast<double>(a.numbers)) : Value::Err("no numbers"); break;
        case Aggregate::kMin: v = a.numbers ? Value::Double(a.min) : Value::Err("no numbers"); break;
        case Aggregate::kMax: v = a.numbers ? Value::Double(a.max) : Value::Err("no numbers"); break;
        case Aggregate::kSum: v = Value::Double(a.sum); break;
        case Aggregate::kCount: v = Value::Int(static_cast<std::int64_t>(a.count)); break;
        case Aggregate::kFirst: v = a.count ? a.first : Value::Err("no values"); break;
        case Aggregate::kLast: v = a.count ? a.last : Value::Err("no values"); break;
      }
      outputs.emplace_back(w.outputs[i].name, std::move(v));
    }
    d.windows.erase(it);
    d.closed_until = std::max(d.closed_until, end);
    d.values = std::move(outputs);
    Evaluate(d, device_id, end, Value::Null(), state, out);
  }
}

std::vector<Transition> Rule::Process(RuleState& state, const Reading& reading) const {
  std::vector<Transition> out;
  auto it = state.devices_.find(reading.device_id);
  if (it == state.devices_.end()) {
    if (state.devices_.size() >= kMaxDevices) {
      ++state.refused_;
      return out;
    }
    it = state.devices_.emplace(reading.device_id, DeviceRuleState{}).first;
  }
  DeviceRuleState& d = it->second;
  const std::int64_t ts = reading.ts_ms;
  if (!InRange(ts)) {
    ++state.late_;  // not a time a reading can have: never used, and counted
    return out;
  }

  if (compiled_->windowed) {
    const auto& w = def_.window;
    bool late = false;
    const std::int64_t first = FloorDiv(ts - w.size_ms, w.hop_ms) + 1;
    const std::int64_t last = FloorDiv(ts, w.hop_ms);
    for (std::int64_t k = first; k <= last; ++k) {
      const std::int64_t start = k * w.hop_ms;
      if (start + w.size_ms <= d.closed_until) {
        late = true;
        continue;
      }
      auto win = d.windows.try_emplace(start).first;
      win->second.resize(w.outputs.size());
      for (std::size_t i = 0; i < w.outputs.size(); ++i) {
        auto v = std::find_if(reading.values.begin(), reading.values.end(),
                              [&](const auto& kv) { return kv.first == w.outputs[i].key; });
        if (v == reading.values.end()) continue;
        Accumulator& a = win->second[i];
        if (a.count == 0 || ts < a.first_ts) a.first = v->second, a.first_ts = ts;
        if (a.count == 0 || ts >= a.last_ts) a.last = v->second, a.last_ts = ts;
        ++a.count;
        const Value& x = v->second;
        if (x.is(Kind::kInt) || x.is(Kind::kUint) || x.is(Kind::kDouble)) {
          const double n = x.is(Kind::kDouble) ? x.double_value()
                                                : (x.is(Kind::kInt) ? static_cast<double>(x.int_value())
                                                                    : static_cast<double>(x.uint_value()));
          a.min = a.numbers ? std::min(a.min, n) : n;
          a.max = a.numbers ? std::max(a.max, n) : n;
          a.sum += n;
          ++a.numbers;
        }
      }
    }
    if (late) ++state.late_;
    d.last_ts = std::max(d.last_ts, ts);
    CloseWindows(d, reading.device_id, d.last_ts, state, out);
    return out;
  }

  if (d.last_ts != kNever && ts < d.last_ts) {
    ++state.late_;  // older than what the rule has decided on already
    return out;
  }
  // What time alone decided before this reading, as a Tick at its time would have: the
  // transitions do not depend on whether or when the caller ticked.
  Elapse(d, reading.device_id, ts, out);
  if (d.no_data) {
    d.no_data = false;
    d.active = false;
    out.push_back(Make(Transition::Kind::kCleared, reading.device_id, def_.alarm_type, d.severity, ts, {}));
  }
  d.last_ts = ts;
  if (def_.no_data_ms > 0) return out;
  for (const auto& [k, v] : reading.values) {
    auto cur = d.latest.find(k);
    if (cur == d.latest.end()) {
      if (d.latest.size() >= kMaxKeysPerDevice) continue;
      d.latest.emplace(k, v);
      continue;
    }
    d.prev.insert_or_assign(k, cur->second);
    cur->second = v;
  }
  Evaluate(d, reading.device_id, ts, reading.attributes, state, out);
  return out;
}

void Rule::Elapse(DeviceRuleState& d, const std::string& device_id, std::int64_t now,
                  std::vector<Transition>& out) const {
  if (def_.no_data_ms > 0) {
    if (!d.active && d.last_ts != kNever && now - d.last_ts >= def_.no_data_ms) {
      d.active = d.no_data = true;
      d.severity = def_.raise[0].severity;
      out.push_back(Make(Transition::Kind::kRaised, device_id, def_.alarm_type, d.severity,
                         d.last_ts + def_.no_data_ms, {}));
    }
    return;
  }
  if (!d.active && def_.for_ms > 0 && d.holding_since != kNever && now - d.holding_since >= def_.for_ms) {
    d.active = true;
    d.severity = d.holding_severity;
    out.push_back(Make(Transition::Kind::kRaised, device_id, def_.alarm_type, d.severity,
                       d.holding_since + def_.for_ms, ValuesOf(d)));
  }
  if (d.active && def_.clear_after_ms > 0 && d.clearing_since != kNever &&
      now - d.clearing_since >= def_.clear_after_ms) {
    d.active = false;
    out.push_back(Make(Transition::Kind::kCleared, device_id, def_.alarm_type, d.severity,
                       d.clearing_since + def_.clear_after_ms, ValuesOf(d)));
    d.clearing_since = kNever;
    d.holding_since = kNever;
  }
}

std::vector<Transition> Rule::Tick(RuleState& state, std::int64_t now_ms) const {
  std::vector<Transition> out;
  now_ms = std::clamp<std::int64_t>(now_ms, 0, kMaxTs);
  for (auto& [id, d] : state.devices_) {
    if (compiled_->windowed) {
      CloseWindows(d, id, now_ms, state, out);
    } else {
      Elapse(d, id, now_ms, out);
    }
  }
  return out;
}

}  // namespace strata::rules
