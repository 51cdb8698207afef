#include <strata/rules/proto.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace strata::rules {
namespace {

std::optional<Aggregate> FromProto(v1::WindowFunction f) {
  switch (f) {
    case v1::WINDOW_FUNCTION_AVG: return Aggregate::kAvg;
    case v1::WINDOW_FUNCTION_MIN: return Aggregate::kMin;
    case v1::WINDOW_FUNCTION_MAX: return Aggregate::kMax;
    case v1::WINDOW_FUNCTION_SUM: return Aggregate::kSum;
    case v1::WINDOW_FUNCTION_COUNT: return Aggregate::kCount;
    case v1::WINDOW_FUNCTION_FIRST: return Aggregate::kFirst;
    case v1::WINDOW_FUNCTION_LAST: return Aggregate::kLast;
    default: return std::nullopt;
  }
}

nlohmann::json ToJson(const Value& v) {
  switch (v.kind()) {
    case Kind::kBool: return v.bool_value();
    case Kind::kInt: return v.int_value();
    case Kind::kUint: return v.uint_value();
    case Kind::kDouble:
      // JSON has no infinity or NaN: those are written as their names.
      if (std::isfinite(v.double_value())) return v.double_value();
      return v.DebugString();
    case Kind::kString: return v.string_value();
    case Kind::kNull: return nullptr;
    default: return v.DebugString();
  }
}

}  // namespace

std::optional<Severity> FromProto(v1::AlarmSeverity s) {
  switch (s) {
    case v1::ALARM_SEVERITY_CRITICAL: return Severity::kCritical;
    case v1::ALARM_SEVERITY_MAJOR: return Severity::kMajor;
    case v1::ALARM_SEVERITY_MINOR: return Severity::kMinor;
    case v1::ALARM_SEVERITY_WARNING: return Severity::kWarning;
    case v1::ALARM_SEVERITY_INDETERMINATE: return Severity::kIndeterminate;
    default: return std::nullopt;
  }
}

v1::AlarmSeverity ToProto(Severity s) {
  switch (s) {
    case Severity::kCritical: return v1::ALARM_SEVERITY_CRITICAL;
    case Severity::kMajor: return v1::ALARM_SEVERITY_MAJOR;
    case Severity::kMinor: return v1::ALARM_SEVERITY_MINOR;
    case Severity::kWarning: return v1::ALARM_SEVERITY_WARNING;
    case Severity::kIndeterminate: return v1::ALARM_SEVERITY_INDETERMINATE;
  }
  return v1::ALARM_SEVERITY_INDETERMINATE;
}

Value ToRuleValue(const v1::Value& v) {
  switch (v.kind_case()) {
    case v1::Value::kDoubleValue: return Value::Double(v.double_value());
    case v1::Value::kIntValue: return Value::Int(v.int_value());
    case v1::Value::kBoolValue: return Value::Bool(v.bool_value());
    case v1::Value::kStringValue: return Value::String(v.string_value());
    default: return Value::Null();
  }
}

Value AttributesOf(const google::protobuf::Map<std::string, std::string>& attributes) {
  MapEntries entries;
  for (const auto& [k, v] : attributes) entries.emplace_back(Value::String(k), Value::String(v));
  return Value::MapOf(std::move(entries));
}

std::string ValuesJson(const std::vector<std::pair<std::string, Value>>& values) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : values) out[k] = ToJson(v);
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool InScope(const v1::Rule& rule, const std::string& device_id, const std::string& device_type) {
  if (rule.device_ids_size() > 0) {
    return std::find(rule.device_ids().begin(), rule.device_ids().end(), device_id) != rule.device_ids().end();
  }
  return rule.device_type().empty() || rule.device_type() == device_type;
}

absl::StatusOr<RuleDefinition> ToDefinition(const v1::Rule& rule) {
  RuleDefinition d;
  d.id = rule.rule_id();
  d.alarm_type = rule.alarm_type();
  for (int i = 0; i < rule.raise_size(); ++i) {
    auto sev = FromProto(rule.raise(i).severity());
    if (!sev) {
      return absl::InvalidArgumentError("raise[" + std::to_string(i) +
                                        "].severity: one of CRITICAL, MAJOR, MINOR, WARNING, INDETERMINATE");
    }
    d.raise.push_back({*sev, rule.raise(i).condition()});
  }
  d.clear = rule.clear();
  d.for_ms = rule.for_ms();
  d.times = rule.times();
  d.within_ms = rule.within_ms();
  d.clear_after_ms = rule.clear_after_ms();
  d.no_data_ms = rule.no_data_ms();
  d.window.size_ms = rule.window().size_ms();
  d.window.hop_ms = rule.window().hop_ms();
  d.window.lateness_ms = rule.window().lateness_ms();
  for (int i = 0; i < rule.window().outputs_size(); ++i) {
    const auto& o = rule.window().outputs(i);
    auto fn = FromProto(o.function());
    if (!fn) {
      return absl::InvalidArgumentError("window.outputs[" + std::to_string(i) +
                                        "].function: one of AVG, MIN, MAX, SUM, COUNT, FIRST, LAST");
    }
    d.window.outputs.push_back({o.name(), *fn, o.key()});
  }
  return d;
}

absl::StatusOr<Rule> CompileRule(const v1::Rule& rule) {
  auto def = ToDefinition(rule);
  if (!def.ok()) return def.status();
  return Rule::Compile(*std::move(def));
}

}  // namespace strata::rules
