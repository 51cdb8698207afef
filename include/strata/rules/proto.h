// The rules engine's side of the API's messages (strata.v1.Rule, Value, AlarmSeverity): the
// one conversion that strata-cloud (when it checks, dry-runs and runs a rule) and strata-edge
// (when it runs the rules of its config revision) share, so a rule means the same in both.
// Its own target (strata::rules_proto), so that strata::rules itself stays free of protobuf.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/statusor.h>
#include <google/protobuf/map.h>

#include <strata/rules/engine.h>

#include "strata/v1/common.pb.h"
#include "strata/v1/rules.pb.h"

namespace strata::rules {

// The engine's definition of an API rule; INVALID_ARGUMENT for what the API allows but the
// engine would not take (an unspecified severity or window function).
absl::StatusOr<RuleDefinition> ToDefinition(const v1::Rule& rule);
// ToDefinition, then Rule::Compile.
absl::StatusOr<Rule> CompileRule(const v1::Rule& rule);

std::optional<Severity> FromProto(v1::AlarmSeverity s);
v1::AlarmSeverity ToProto(Severity s);
Value ToRuleValue(const v1::Value& v);
// A device's attributes as a rule's `attr`.
Value AttributesOf(const google::protobuf::Map<std::string, std::string>& attributes);
// What a transition read, as a JSON object (non-finite numbers as their names).
std::string ValuesJson(const std::vector<std::pair<std::string, Value>>& values);

// Whether a rule's scope holds a device: its device_ids, or (none named) its device_type, or
// (neither) every device.
bool InScope(const v1::Rule& rule, const std::string& device_id, const std::string& device_type);

}  // namespace strata::rules
