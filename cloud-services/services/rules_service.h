// strata.v1.Rules and strata.v1.Alarms: rules are checked with the engine that runs them
// (strata::rules) when they are written, so a bad rule is INVALID_ARGUMENT naming the field,
// the line and the column; a dry run replays stored telemetry through a rule; alarms are
// listed, read, acknowledged and cleared on the alarm store.
#pragma once

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/rules/engine.h>
#include <strata/rules/proto.h>

#include "storage/store.h"
#include "strata/v1/rules.grpc.pb.h"

namespace strata::services {

inline constexpr std::size_t kMaxRuleDevices = 1000;
inline constexpr std::int64_t kMaxDryRunSpanMs = 31LL * 24 * 3600 * 1000;
inline constexpr std::int64_t kMaxDryRunReadings = 1000000;
inline constexpr std::size_t kMaxDryRunTransitions = 10000;

// Checks a whole rule as the API takes it (ids, lengths, scope, and the engine's Compile).
absl::StatusOr<rules::Rule> CheckRule(const v1::Rule& rule);

using rules::ToDefinition;
using rules::ToProto;
using rules::ToRuleValue;
// A device's attributes as a rule's `attr`.
rules::Value AttributesOf(const v1::Device& d);
// What a transition read, as JSON (non-finite numbers as their names).
google::protobuf::Value ToStructValue(const rules::Value& v);
google::protobuf::Struct ToStruct(const std::vector<std::pair<std::string, rules::Value>>& values);

class RulesService final : public v1::Rules::Service {
 public:
  RulesService(storage::Database& db, MetricsRegistry& metrics, Clock clock);

  grpc::Status CreateRule(grpc::ServerContext*, const v1::CreateRuleRequest*, v1::Rule*) override;
  grpc::Status GetRule(grpc::ServerContext*, const v1::GetRuleRequest*, v1::Rule*) override;
  grpc::Status ListRules(grpc::ServerContext*, const v1::ListRulesRequest*, v1::ListRulesResponse*) override;
  grpc::Status UpdateRule(grpc::ServerContext*, const v1::UpdateRuleRequest*, v1::Rule*) override;
  grpc::Status DeleteRule(grpc::ServerContext*, const v1::DeleteRuleRequest*, v1::DeleteRuleResponse*) override;
  grpc::Status DryRunRule(grpc::ServerContext*, const v1::DryRunRuleRequest*, v1::DryRunRuleResponse*) override;

 private:
  storage::Database& db_;
  Clock clock_;
  Counter& rejected_total_;
};

class AlarmsService final : public v1::Alarms::Service {
 public:
  AlarmsService(storage::Database& db, MetricsRegistry& metrics, Clock clock);

  grpc::Status ListAlarms(grpc::ServerContext*, const v1::ListAlarmsRequest*, v1::ListAlarmsResponse*) override;
  grpc::Status GetAlarm(grpc::ServerContext*, const v1::GetAlarmRequest*, v1::Alarm*) override;
  grpc::Status AckAlarm(grpc::ServerContext*, const v1::AckAlarmRequest*, v1::Alarm*) override;
  grpc::Status ClearAlarm(grpc::ServerContext*, const v1::ClearAlarmRequest*, v1::Alarm*) override;

 private:
  storage::Database& db_;
  Clock clock_;
  Counter& acked_total_;
  Counter& cleared_total_;
};

}  // namespace strata::services
