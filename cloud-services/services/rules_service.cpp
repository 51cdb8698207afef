#include "services/rules_service.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "services/grpc_status.h"
#include "services/page_token.h"
#include "services/request_context.h"
#include "services/request_limits.h"
#include "strata/ids.h"

namespace strata::services {
namespace {

constexpr std::size_t kMaxRuleNameBytes = 256;
constexpr std::size_t kMaxRuleDescriptionBytes = 4096;

grpc::Status Invalid(const std::string& message) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message); }

// The update_mask paths UpdateRule takes, and how each copies from the request's rule.
void CopyField(const std::string& path, const v1::Rule& from, v1::Rule& to) {
  if (path == "name") to.set_name(from.name());
  else if (path == "description") to.set_description(from.description());
  else if (path == "enabled") to.set_enabled(!from.has_enabled() || from.enabled());  // absent: the default, true
  else if (path == "location") to.set_location(from.location());
  else if (path == "device_ids") *to.mutable_device_ids() = from.device_ids();
  else if (path == "device_type") to.set_device_type(from.device_type());
  else if (path == "alarm_type") to.set_alarm_type(from.alarm_type());
  else if (path == "raise") *to.mutable_raise() = from.raise();
  else if (path == "clear") to.set_clear(from.clear());
  else if (path == "for_ms") to.set_for_ms(from.for_ms());
  else if (path == "times") to.set_times(from.times());
  else if (path == "within_ms") to.set_within_ms(from.within_ms());
  else if (path == "clear_after_ms") to.set_clear_after_ms(from.clear_after_ms());
  else if (path == "no_data_ms") to.set_no_data_ms(from.no_data_ms());
  else if (path == "window") *to.mutable_window() = from.window();
}

// Whether the request's rule sets the field (for an update without a mask).
bool IsSet(const std::string& path, const v1::Rule& r) {
  if (path == "name") return !r.name().empty();
  if (path == "description") return !r.description().empty();
  if (path == "enabled") return r.has_enabled();
  if (path == "location") return r.location() != v1::RULE_LOCATION_UNSPECIFIED;
  if (path == "device_ids") return r.device_ids_size() > 0;
  if (path == "device_type") return !r.device_type().empty();
  if (path == "alarm_type") return !r.alarm_type().empty();
  if (path == "raise") return r.raise_size() > 0;
  if (path == "clear") return !r.clear().empty();
  if (path == "for_ms") return r.for_ms() != 0;
  if (path == "times") return r.times() != 0;
  if (path == "within_ms") return r.within_ms() != 0;
  if (path == "clear_after_ms") return r.clear_after_ms() != 0;
  if (path == "no_data_ms") return r.no_data_ms() != 0;
  if (path == "window") return r.has_window();
  return false;
}

const std::set<std::string>& UpdatablePaths() {
  static const std::set<std::string> paths = {"name",      "description", "enabled",        "location",
                                              "device_ids", "device_type", "alarm_type",     "raise",
                                              "clear",     "for_ms",      "times",          "within_ms",
                                              "clear_after_ms", "no_data_ms", "window"};
  return paths;
}

}  // namespace

google::protobuf::Value ToStructValue(const rules::Value& v) {
  google::protobuf::Value out;
  switch (v.kind()) {
    case rules::Kind::kBool: out.set_bool_value(v.bool_value()); break;
    case rules::Kind::kInt: out.set_number_value(static_cast<double>(v.int_value())); break;
    case rules::Kind::kUint: out.set_number_value(static_cast<double>(v.uint_value())); break;
    case rules::Kind::kDouble:
      // JSON has no infinity or NaN: those are written as their names.
      if (std::isfinite(v.double_value())) out.set_number_value(v.double_value());
      else out.set_string_value(v.DebugString());
      break;
    case rules::Kind::kString: out.set_string_value(v.string_value()); break;
    case rules::Kind::kNull: out.set_null_value(google::protobuf::NULL_VALUE); break;
    default: out.set_string_value(v.DebugString()); break;
  }
  return out;
}

rules::Value AttributesOf(const v1::Device& d) { return rules::AttributesOf(d.attributes()); }

google::protobuf::Struct ToStruct(const std::vector<std::pair<std::string, rules::Value>>& values) {
  google::protobuf::Struct out;
  for (const auto& [k, v] : values) (*out.mutable_fields())[k] = ToStructValue(v);
  return out;
}

absl::StatusOr<rules::Rule> CheckRule(const v1::Rule& rule) {
  if (auto s = ValidateId("rule_id", rule.rule_id()); !s.ok()) return s;
  if (auto s = CheckLength("name", rule.name(), kMaxRuleNameBytes); !s.ok()) return s;
  if (auto s = CheckLength("description", rule.description(), kMaxRuleDescriptionBytes); !s.ok()) return s;
  if (!v1::RuleLocation_IsValid(rule.location()) || rule.location() == v1::RULE_LOCATION_UNSPECIFIED) {
    return absl::InvalidArgumentError("location: CLOUD or EDGE");
  }
  if (static_cast<std::size_t>(rule.device_ids_size()) > kMaxRuleDevices) {
    return absl::InvalidArgumentError("device_ids: at most " + std::to_string(kMaxRuleDevices));
  }
  for (const auto& id : rule.device_ids()) {
    if (auto s = ValidateId("device_ids[]", id); !s.ok()) return s;
  }
  if (!rule.device_type().empty()) {
    if (auto s = CheckLength("device_type", rule.device_type(), kMaxIdBytes); !s.ok()) return s;
  }
  if (auto s = ValidateId("alarm_type", rule.alarm_type()); !s.ok()) return s;
  return rules::CompileRule(rule);
}

RulesService::RulesService(storage::Database& db, MetricsRegistry& metrics, Clock clock)
    : db_(db),
      clock_(std::move(clock)),
      rejected_total_(metrics.GetCounter("strata_cloud_rules_rejected_total",
                                         "Rules refused at creation or change (syntax, types, limits)")) {}

grpc::Status RulesService::CreateRule(grpc::ServerContext* context, const v1::CreateRuleRequest* req, v1::Rule* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  v1::Rule rule = req->rule();
  if (rule.rule_id().empty()) rule.set_rule_id(RandomId());
  if (!rule.has_enabled()) rule.set_enabled(true);
  if (rule.location() == v1::RULE_LOCATION_UNSPECIFIED) rule.set_location(v1::RULE_LOCATION_CLOUD);
  if (auto checked = CheckRule(rule); !checked.ok()) {
    rejected_total_.Inc();
    return ToGrpc(checked.status());
  }
  auto created = db_.Rules().CreateRule(caller->tenant, rule);
  if (!created.ok()) return ToGrpc(created.status());
  *out = std::move(*created);
  return grpc::Status::OK;
}

grpc::Status RulesService::GetRule(grpc::ServerContext* context, const v1::GetRuleRequest* req, v1::Rule* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("rule_id", req->rule_id()); !s.ok()) return ToGrpc(s);
  auto r = db_.Rules().GetRule(caller->tenant, req->rule_id());
  if (!r.ok()) return ToGrpc(r.status());
  *out = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status RulesService::ListRules(grpc::ServerContext* context, const v1::ListRulesRequest* req,
                                     v1::ListRulesResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = CheckPageSize(req->page_size()); !s.ok()) return ToGrpc(s);
  const int page_size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  std::string after;
  if (!req->page_token().empty()) {
    auto t = DecodeIdToken(req->page_token());
    if (!t.ok()) return ToGrpc(t.status());
    after = *t;
  }
  auto rows = db_.Rules().ListRules(caller->tenant, page_size, after);
  if (!rows.ok()) return ToGrpc(rows.status());
  if (static_cast<int>(rows->size()) > page_size) {
    rows->resize(page_size);
    out->set_next_page_token(EncodeIdToken(rows->back().rule_id()));
  }
  for (auto& r : *rows) *out->add_rules() = std::move(r);
  return grpc::Status::OK;
}

grpc::Status RulesService::UpdateRule(grpc::ServerContext* context, const v1::UpdateRuleRequest* req, v1::Rule* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("rule.rule_id", req->rule().rule_id()); !s.ok()) return ToGrpc(s);
  for (const auto& path : req->update_mask().paths()) {
    if (!UpdatablePaths().count(path)) {
      return Invalid("update_mask: '" + path + "' is not a field of a rule that can change");
    }
  }
  auto current = db_.Rules().GetRule(caller->tenant, req->rule().rule_id());
  if (!current.ok()) return ToGrpc(current.status());
  v1::Rule rule = *current;
  if (req->update_mask().paths_size() == 0) {
    for (const auto& path : UpdatablePaths()) {
      if (IsSet(path, req->rule())) CopyField(path, req->rule(), rule);
    }
  } else {
    for (const auto& path : req->update_mask().paths()) CopyField(path, req->rule(), rule);
  }
  if (rule.location() == v1::RULE_LOCATION_UNSPECIFIED) rule.set_location(v1::RULE_LOCATION_CLOUD);
  if (auto checked = CheckRule(rule); !checked.ok()) {
    rejected_total_.Inc();
    return ToGrpc(checked.status());
  }
  auto replaced = db_.Rules().ReplaceRule(caller->tenant, rule);
  if (!replaced.ok()) return ToGrpc(replaced.status());
  *out = std::move(*replaced);
  return grpc::Status::OK;
}

grpc::Status RulesService::DeleteRule(grpc::ServerContext* context, const v1::DeleteRuleRequest* req,
                                      v1::DeleteRuleResponse*) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("rule_id", req->rule_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(db_.Rules().DeleteRule(caller->tenant, req->rule_id()));
}

grpc::Status RulesService::DryRunRule(grpc::ServerContext* context, const v1::DryRunRuleRequest* req,
                                      v1::DryRunRuleResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("rule_id", req->rule_id()); !s.ok()) return ToGrpc(s);
  if (req->start() < 0 || req->end() <= req->start() || req->end() - req->start() > kMaxDryRunSpanMs) {
    return Invalid("start and end: 0 <= start < end, at most 31 days apart (ms since the epoch)");
  }
  auto stored = db_.Rules().GetRule(caller->tenant, req->rule_id());
  if (!stored.ok()) return ToGrpc(stored.status());
  auto rule = CheckRule(*stored);
  if (!rule.ok()) return ToGrpc(rule.status());

  // The devices in the rule's scope, with their attributes.
  std::vector<v1::Device> devices;
  if (stored->device_ids_size() > 0) {
    const std::set<std::string> ids(stored->device_ids().begin(), stored->device_ids().end());
    for (const auto& id : ids) {
      auto d = db_.Devices().GetDevice(caller->tenant, id);
      if (d.ok()) devices.push_back(std::move(*d));
      else if (d.status().code() != absl::StatusCode::kNotFound) return ToGrpc(d.status());
    }
  } else {
    storage::DeviceListQuery q;
    q.page_size = 1000;
    while (devices.size() <= kMaxRuleDevices) {
      auto page = db_.Devices().ListDevices(caller->tenant, q);
      if (!page.ok()) return ToGrpc(page.status());
      const bool more = static_cast<int>(page->size()) > q.page_size;
      if (more) page->resize(q.page_size);
      for (auto& d : *page) {
        if (stored->device_type().empty() || d.type() == stored->device_type()) devices.push_back(std::move(d));
      }
      if (!more || page->empty()) break;
      q.after_device_id = page->back().device_id();
    }
    if (devices.size() > kMaxRuleDevices) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "the rule's scope has more than " + std::to_string(kMaxRuleDevices) +
                              " devices; name them in device_ids or a device_type to dry-run it");
    }
  }

  rules::RuleState state;
  std::int64_t readings = 0;
  bool truncated = false;
  auto emit = [&](const std::vector<rules::Transition>& ts) {
    for (const auto& t : ts) {
      if (static_cast<std::size_t>(out->transitions_size()) >= kMaxDryRunTransitions) {
        truncated = true;
        return;
      }
      v1::RuleTransition* p = out->add_transitions();
      p->set_device_id(t.device_id);
      p->set_kind(std::string(rules::TransitionName(t.kind)));
      p->set_severity(ToProto(t.severity));
      p->set_ts(t.ts_ms);
      *p->mutable_values() = ToStruct(t.values);
    }
  };
  for (const auto& device : devices) {
    const rules::Value attributes = AttributesOf(device);
    storage::TelemetryQuery q;
    q.device_id = device.device_id();
    q.start = req->start();
    q.end = req->end();
    q.limit = 10000;
    rules::Reading pending{device.device_id(), 0, {}, attributes};
    bool have = false;
    while (!truncated) {
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the dry run was cancelled");
      auto page = db_.Telemetry().Query(caller->tenant, q);
      if (!page.ok()) return ToGrpc(page.status());
      const bool more = static_cast<int>(page->size()) > q.limit;
      if (more) page->resize(q.limit);
      // Rows come ordered by (ts, key): one reading per timestamp.
      for (const auto& r : *page) {
        if (have && r.ts() != pending.ts_ms) {
          if (++readings > kMaxDryRunReadings) {
            truncated = true;
            break;
          }
          emit(rule->Process(state, pending));
          pending.values.clear();
        }
        pending.ts_ms = r.ts();
        pending.values.emplace_back(r.key(), ToRuleValue(r.value()));
        have = true;
      }
      if (!more || page->empty() || truncated) break;
      q.after = storage::TelemetryCursor{page->back().ts(), page->back().key()};
    }
    if (have && !truncated) {
      ++readings;
      emit(rule->Process(state, pending));
    }
  }
  // What time alone decides by the end of the range (a DURATION still holding, no data).
  if (!truncated) emit(rule->Tick(state, req->end()));
  std::stable_sort(out->mutable_transitions()->begin(), out->mutable_transitions()->end(),
                   [](const v1::RuleTransition& a, const v1::RuleTransition& b) { return a.ts() < b.ts(); });
  out->set_readings(readings);
  out->set_devices(static_cast<int>(devices.size()));
  out->set_late_readings(static_cast<std::int64_t>(state.late_readings()));
  out->set_eval_errors(static_cast<std::int64_t>(state.eval_errors()));
  out->set_truncated(truncated);
  return grpc::Status::OK;
}

AlarmsService::AlarmsService(storage::Database& db, MetricsRegistry& metrics, Clock clock)
    : db_(db),
      clock_(std::move(clock)),
      acked_total_(metrics.GetCounter("strata_cloud_alarms_acknowledged_total", "Alarms acknowledged through the API")),
      cleared_total_(metrics.GetCounter("strata_cloud_alarms_cleared_total", "Alarms cleared through the API")) {}

grpc::Status AlarmsService::ListAlarms(grpc::ServerContext* context, const v1::ListAlarmsRequest* req,
                                       v1::ListAlarmsResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = CheckPageSize(req->page_size()); !s.ok()) return ToGrpc(s);
  if (!req->device_id().empty()) {
    if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  }
  if (!req->type().empty()) {
    if (auto s = ValidateId("type", req->type()); !s.ok()) return ToGrpc(s);
  }
  if (!v1::AlarmSeverity_IsValid(req->severity())) return Invalid("severity is not an AlarmSeverity");
  if (!v1::AlarmStatus_IsValid(req->status())) return Invalid("status is not an AlarmStatus");
  if (req->start() < 0 || req->end() < 0 || (req->end() != 0 && req->end() <= req->start())) {
    return Invalid("start and end: ms since the epoch, start < end (end 0: no bound)");
  }
  storage::AlarmListQuery q;
  q.device_id = req->device_id();
  q.type = req->type();
  q.severity = req->severity();
  q.status = req->status();
  q.start = req->start();
  q.end = req->end();
  q.page_size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  if (!req->page_token().empty()) {
    auto cursor = DecodeTelemetryToken(req->page_token());  // a time and an id, as a command's
    if (!cursor.ok()) return ToGrpc(cursor.status());
    q.before = storage::AlarmCursor{cursor->ts, cursor->key};
  }
  auto rows = db_.Alarms().ListAlarms(caller->tenant, q);
  if (!rows.ok()) return ToGrpc(rows.status());
  if (static_cast<int>(rows->size()) > q.page_size) {
    rows->resize(q.page_size);
    out->set_next_page_token(EncodeTelemetryToken({rows->back().start_ts(), rows->back().alarm_id()}));
  }
  for (auto& a : *rows) *out->add_alarms() = std::move(a);
  return grpc::Status::OK;
}

grpc::Status AlarmsService::GetAlarm(grpc::ServerContext* context, const v1::GetAlarmRequest* req, v1::Alarm* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("alarm_id", req->alarm_id()); !s.ok()) return ToGrpc(s);
  auto a = db_.Alarms().GetAlarm(caller->tenant, req->alarm_id());
  if (!a.ok()) return ToGrpc(a.status());
  *out = std::move(*a);
  return grpc::Status::OK;
}

grpc::Status AlarmsService::AckAlarm(grpc::ServerContext* context, const v1::AckAlarmRequest* req, v1::Alarm* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("alarm_id", req->alarm_id()); !s.ok()) return ToGrpc(s);
  auto a = db_.Alarms().AckAlarm(caller->tenant, req->alarm_id(), clock_(), "api");
  if (!a.ok()) return ToGrpc(a.status());
  acked_total_.Inc();
  *out = std::move(*a);
  return grpc::Status::OK;
}

grpc::Status AlarmsService::ClearAlarm(grpc::ServerContext* context, const v1::ClearAlarmRequest* req,
                                       v1::Alarm* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("alarm_id", req->alarm_id()); !s.ok()) return ToGrpc(s);
  auto a = db_.Alarms().ClearAlarm(caller->tenant, req->alarm_id(), clock_(), "api");
  if (!a.ok()) return ToGrpc(a.status());
  cleared_total_.Inc();
  *out = std::move(*a);
  return grpc::Status::OK;
}

}  // namespace strata::services
