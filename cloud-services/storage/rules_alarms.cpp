// The rule and alarm stores, written once for both backends on storage/sql_tx.h: every
// statement below is portable SQL (see sql.h) and runs as it is on SQLite and PostgreSQL.
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "storage/sql_tx.h"
#include "storage/store.h"
#include "strata/ids.h"

namespace strata::storage {
namespace {

constexpr std::int64_t kActiveUnack = v1::ALARM_STATUS_ACTIVE_UNACK;
constexpr std::int64_t kActiveAck = v1::ALARM_STATUS_ACTIVE_ACK;
constexpr std::int64_t kClearedUnack = v1::ALARM_STATUS_CLEARED_UNACK;
constexpr std::int64_t kClearedAck = v1::ALARM_STATUS_CLEARED_ACK;

// ---- rules --------------------------------------------------------------------------------

constexpr std::string_view kInsertRule =
    "INSERT INTO rules (tenant_id, rule_id, definition, enabled, location, created_at, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (tenant_id, rule_id) DO NOTHING";
constexpr std::string_view kSelectRule =
    "SELECT definition, created_at, updated_at FROM rules WHERE tenant_id = ?1 AND rule_id = ?2";
constexpr std::string_view kListRules =
    "SELECT definition, created_at, updated_at FROM rules WHERE tenant_id = ?1 AND rule_id > ?2"
    " ORDER BY rule_id LIMIT ?3";
constexpr std::string_view kReplaceRule =
    "UPDATE rules SET definition = ?3, enabled = ?4, location = ?5, updated_at = ?6"
    " WHERE tenant_id = ?1 AND rule_id = ?2";
constexpr std::string_view kDeleteRule = "DELETE FROM rules WHERE tenant_id = ?1 AND rule_id = ?2";
// A rule's state is of its definition: a changed or deleted rule starts from none.
constexpr std::string_view kDeleteRuleState = "DELETE FROM rule_state WHERE tenant_id = ?1 AND rule_id = ?2";
// Only for the rule as it still is (?5: its updated_at): a state of a changed or deleted
// rule, written after the change, would come back with the next definition.
constexpr std::string_view kSaveRuleState =
    "INSERT INTO rule_state (tenant_id, rule_id, state, updated_at)"
    " SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS BIGINT) WHERE EXISTS"
    " (SELECT 1 FROM rules WHERE tenant_id = ?1 AND rule_id = ?2 AND updated_at = ?5 AND enabled = 1)"
    " ON CONFLICT (tenant_id, rule_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";
// A changed, disabled or deleted rule's active alarms end with it.
constexpr std::string_view kClearRuleAlarms =
    "UPDATE alarms SET active = 0, status = CASE WHEN status = ?3 THEN CAST(?4 AS INTEGER) ELSE CAST(?5 AS INTEGER) END,"
    " end_ts = ?6, clear_ts = ?6, updated_at = ?6 WHERE tenant_id = ?1 AND rule_id = ?2 AND active = 1"
    " RETURNING alarm_id, severity";
constexpr std::string_view kSelectDefinition = "SELECT definition FROM rules WHERE tenant_id = ?1 AND rule_id = ?2";
constexpr std::string_view kLockEdgeAlarmSeq =
    "UPDATE edges SET alarm_seq = alarm_seq WHERE tenant_id = ?1 AND edge_id = ?2 RETURNING alarm_seq";
constexpr std::string_view kSetEdgeAlarmSeq = "UPDATE edges SET alarm_seq = ?3 WHERE tenant_id = ?1 AND edge_id = ?2";
constexpr std::string_view kLoadRuleState = "SELECT state FROM rule_state WHERE tenant_id = ?1 AND rule_id = ?2";

std::string RuleJson(v1::Rule rule) {
  // What the row's columns hold is not repeated in the definition.
  rule.clear_tenant_id();
  rule.clear_created_at();
  rule.clear_updated_at();
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(rule, &out);
  return out;
}

absl::StatusOr<v1::Rule> RuleFromRow(const SqlRow& row, std::string_view tenant) {
  v1::Rule r;
  google::protobuf::util::JsonParseOptions lenient;
  lenient.ignore_unknown_fields = true;  // a field of a newer release
  if (!google::protobuf::util::JsonStringToMessage(row.Text(0), &r, lenient).ok()) {
    return absl::InternalError("a stored rule is not a readable definition");
  }
  r.set_tenant_id(std::string(tenant));
  r.set_created_at(row.Int(1));
  r.set_updated_at(row.Int(2));
  if (r.evaluated_since() == 0) r.set_evaluated_since(r.updated_at());  // stored before the field
  return r;
}

absl::Status Event(SqlTx& tx, const std::string& tenant, const std::string& alarm_id, std::string_view kind,
                   std::int64_t severity, std::int64_t at, std::string_view source, const std::string& values);

// What a rule evaluates, as JSON: its definition without what does not change its alarms.
std::string Evaluated(v1::Rule rule) {
  rule.clear_name();
  rule.clear_description();
  rule.clear_evaluated_since();
  return RuleJson(std::move(rule));
}

// Ends the rule's state and its active alarms (a changed, disabled or deleted rule).
absl::Status EndRule(SqlTx& tx, const std::string& tenant, const std::string& rule_id, std::int64_t now,
                     std::string_view why) {
  if (auto n = tx.Exec(kDeleteRuleState, {tenant, rule_id}); !n.ok()) return n.status();
  std::vector<std::pair<std::string, std::int64_t>> cleared;
  auto q = tx.Query(kClearRuleAlarms,
                    {tenant, rule_id, kActiveAck, kClearedAck, kClearedUnack, now}, [&](const SqlRow& row) {
                      cleared.emplace_back(row.Text(0), row.Int(1));
                      return absl::OkStatus();
                    });
  if (!q.ok()) return q;
  for (const auto& [alarm_id, severity] : cleared) {
    if (auto s = Event(tx, tenant, alarm_id, "CLEARED", severity, now, "rule:" + rule_id + " " + std::string(why), "{}");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

class Rules final : public RuleStore {
 public:
  explicit Rules(SqlRunner& db) : db_(db) {}

  absl::StatusOr<v1::Rule> CreateRule(std::string_view tenant, const v1::Rule& rule) override {
    const std::int64_t now = db_.Now();
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      v1::Rule stored = rule;
      stored.set_evaluated_since(now);
      auto n = tx.Exec(kInsertRule, {std::string(tenant), rule.rule_id(), RuleJson(stored),
                                     std::int64_t{rule.enabled()}, std::int64_t{rule.location()}, now});
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::AlreadyExistsError("rule '" + rule.rule_id() + "' already exists");
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    v1::Rule out = rule;
    out.set_tenant_id(std::string(tenant));
    out.set_created_at(now);
    out.set_updated_at(now);
    out.set_evaluated_since(now);
    return out;
  }

  absl::StatusOr<v1::Rule> GetRule(std::string_view tenant, std::string_view rule_id) override {
    std::optional<v1::Rule> found;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      found.reset();
      return tx.Query(kSelectRule, {std::string(tenant), std::string(rule_id)}, [&](const SqlRow& row) {
        auto r = RuleFromRow(row, tenant);
        if (!r.ok()) return r.status();
        found = std::move(*r);
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    if (!found) return absl::NotFoundError("rule '" + std::string(rule_id) + "' not found");
    return *found;
  }

  absl::StatusOr<std::vector<v1::Rule>> ListRules(std::string_view tenant, int page_size,
                                                  std::string_view after_rule_id) override {
    std::vector<v1::Rule> out;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      out.clear();
      return tx.Query(kListRules, {std::string(tenant), std::string(after_rule_id), std::int64_t{page_size} + 1},
                      [&](const SqlRow& row) {
                        auto r = RuleFromRow(row, tenant);
                        if (!r.ok()) return r.status();
                        out.push_back(std::move(*r));
                        return absl::OkStatus();
                      });
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::Rule> ReplaceRule(std::string_view tenant, const v1::Rule& rule) override {
    const std::int64_t now = db_.Now();
    const std::string t(tenant);
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      std::optional<std::string> before;
      auto q = tx.Query(kSelectDefinition, {t, rule.rule_id()}, [&](const SqlRow& row) {
        before = row.Text(0);
        return absl::OkStatus();
      });
      if (!q.ok()) return q;
      if (!before) return absl::NotFoundError("rule '" + rule.rule_id() + "' not found");
      v1::Rule old;
      google::protobuf::util::JsonParseOptions lenient;
      lenient.ignore_unknown_fields = true;
      (void)google::protobuf::util::JsonStringToMessage(*before, &old, lenient);
      const bool disabled = !rule.enabled() && (!old.has_enabled() || old.enabled());
      const bool same = Evaluated(old) == Evaluated(rule) && !disabled;
      v1::Rule stored = rule;
      // A rule stored before evaluated_since was: its evaluated version is unknown, so now.
      stored.set_evaluated_since(same && old.evaluated_since() > 0 ? old.evaluated_since() : now);
      auto n = tx.Exec(kReplaceRule, {t, rule.rule_id(), RuleJson(stored), std::int64_t{rule.enabled()},
                                      std::int64_t{rule.location()}, now});
      if (!n.ok()) return n.status();
      if (same) return absl::OkStatus();
      return EndRule(tx, t, rule.rule_id(), now, disabled ? "disabled" : "changed");
    });
    if (!s.ok()) return s;
    return GetRule(tenant, rule.rule_id());
  }

  absl::Status DeleteRule(std::string_view tenant, std::string_view rule_id) override {
    return db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      auto n = tx.Exec(kDeleteRule, {std::string(tenant), std::string(rule_id)});
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::NotFoundError("rule '" + std::string(rule_id) + "' not found");
      return EndRule(tx, std::string(tenant), std::string(rule_id), db_.Now(), "deleted");
    });
  }

 private:
  SqlRunner& db_;
};

// ---- alarms -------------------------------------------------------------------------------

// The column order AlarmFromRow reads.
#define STRATA_ALARM_COLUMNS                                                                          \
  "alarm_id, device_id, type, severity, status, rule_id, start_ts, end_ts, ack_ts, clear_ts, details," \
  " created_at, updated_at"

// An occurrence of the active alarm: prev_severity is set from the old row.
constexpr std::string_view kRaiseExisting =
    "UPDATE alarms SET prev_severity = severity, severity = ?4, details = ?5, updated_at = ?6"
    " WHERE tenant_id = ?1 AND device_id = ?2 AND type = ?3 AND active = 1 RETURNING alarm_id, prev_severity";
// A new alarm, unless another raise made one since the UPDATE above found none: then the
// unique index of active alarms turns this into the same occurrence.
constexpr std::string_view kRaiseNew =
    "INSERT INTO alarms (tenant_id, alarm_id, device_id, type, severity, prev_severity, status, active, rule_id,"
    " start_ts, details, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?10)"
    " ON CONFLICT (tenant_id, device_id, type) WHERE active = 1 DO UPDATE SET prev_severity = alarms.severity,"
    " severity = excluded.severity, details = excluded.details, updated_at = excluded.updated_at"
    " RETURNING alarm_id, prev_severity";
constexpr std::string_view kClearActive =
    "UPDATE alarms SET active = 0, status = CASE WHEN status = ?4 THEN CAST(?5 AS INTEGER) ELSE CAST(?6 AS INTEGER) END,"
    " end_ts = ?7, clear_ts = ?7,"
    " updated_at = ?8 WHERE tenant_id = ?1 AND device_id = ?2 AND type = ?3 AND active = 1 RETURNING alarm_id";
constexpr std::string_view kClearById =
    "UPDATE alarms SET active = 0, status = CASE WHEN status = ?3 THEN CAST(?4 AS INTEGER) ELSE CAST(?5 AS INTEGER) END,"
    " end_ts = ?6, clear_ts = ?6,"
    " updated_at = ?7 WHERE tenant_id = ?1 AND alarm_id = ?2 AND active = 1";
constexpr std::string_view kAck =
    "UPDATE alarms SET status = CASE WHEN status = ?3 THEN CAST(?4 AS INTEGER) ELSE CAST(?5 AS INTEGER) END, ack_ts = ?6,"
    " updated_at = ?7"
    " WHERE tenant_id = ?1 AND alarm_id = ?2 AND (status = ?3 OR status = ?8)";
constexpr std::string_view kSelectAlarm =
    "SELECT " STRATA_ALARM_COLUMNS " FROM alarms WHERE tenant_id = ?1 AND alarm_id = ?2";
constexpr std::string_view kSelectEvents =
    "SELECT kind, severity, at, source, vals FROM alarm_events WHERE tenant_id = ?1 AND alarm_id = ?2 ORDER BY seq";
constexpr std::string_view kInsertEvent =
    "INSERT INTO alarm_events (tenant_id, alarm_id, seq, kind, severity, at, source, vals)"
    " SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), COALESCE(MAX(seq), 0) + 1, CAST(?3 AS TEXT),"
    " CAST(?4 AS INTEGER), CAST(?5 AS BIGINT), CAST(?6 AS TEXT), CAST(?7 AS TEXT)"
    " FROM alarm_events WHERE tenant_id = ?1 AND alarm_id = ?2";
constexpr std::string_view kSelectSeverity = "SELECT severity FROM alarms WHERE tenant_id = ?1 AND alarm_id = ?2";
// ?2..?7: the filters ('' / 0: any); ?8, ?9: the cursor (start_ts, alarm_id), ?8 = -1 for none.
constexpr std::string_view kListAlarms =
    "SELECT " STRATA_ALARM_COLUMNS
    " FROM alarms WHERE tenant_id = ?1 AND (CAST(?2 AS TEXT) = '' OR device_id = ?2)"
    " AND (CAST(?3 AS TEXT) = '' OR type = ?3) AND (CAST(?4 AS INTEGER) = 0 OR severity = ?4)"
    " AND (CAST(?5 AS INTEGER) = 0 OR status = ?5) AND start_ts >= ?6 AND (CAST(?7 AS BIGINT) = 0 OR start_ts < ?7)"
    " AND (CAST(?8 AS BIGINT) = -1 OR start_ts < ?8 OR (start_ts = ?8 AND alarm_id < ?9))"
    " ORDER BY start_ts DESC, alarm_id DESC LIMIT ?10";

std::string StructJson(const google::protobuf::Struct& s) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(s, &out);
  return out.empty() ? "{}" : out;
}

void StructFromJson(const std::string& text, google::protobuf::Struct* out) {
  if (!google::protobuf::util::JsonStringToMessage(text, out).ok()) out->Clear();
}

v1::Alarm AlarmFromRow(const SqlRow& row, std::string_view tenant) {
  v1::Alarm a;
  a.set_alarm_id(row.Text(0));
  a.set_tenant_id(std::string(tenant));
  a.set_device_id(row.Text(1));
  a.set_type(row.Text(2));
  a.set_severity(static_cast<v1::AlarmSeverity>(row.Int(3)));
  a.set_status(static_cast<v1::AlarmStatus>(row.Int(4)));
  a.set_rule_id(row.Text(5));
  a.set_start_ts(row.Int(6));
  a.set_end_ts(row.Int(7));
  a.set_ack_ts(row.Int(8));
  a.set_clear_ts(row.Int(9));
  StructFromJson(row.Text(10), a.mutable_details());
  a.set_created_at(row.Int(11));
  a.set_updated_at(row.Int(12));
  return a;
}

absl::Status Event(SqlTx& tx, const std::string& tenant, const std::string& alarm_id, std::string_view kind,
                   std::int64_t severity, std::int64_t at, std::string_view source, const std::string& values) {
  return tx.Exec(kInsertEvent, {tenant, alarm_id, std::string(kind), severity, at, std::string(source), values})
      .status();
}

class Alarms final : public AlarmStore {
 public:
  explicit Alarms(SqlRunner& db) : db_(db) {}

  absl::StatusOr<AlarmRaiseResult> RaiseAlarm(std::string_view tenant, const AlarmRaise& raise) override {
    const std::string t(tenant);
    AlarmRaiseResult result;
    std::string alarm_id;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      result = {};
      return RaiseIn(tx, t, raise, db_.Now(), result, alarm_id);
    });
    if (!s.ok()) return s;
    auto alarm = Read(t, alarm_id, false);
    if (!alarm.ok()) return alarm.status();
    result.alarm = std::move(*alarm);
    return result;
  }

  absl::StatusOr<v1::Alarm> ClearActiveAlarm(std::string_view tenant, std::string_view device_id,
                                             std::string_view type, std::int64_t ts,
                                             std::string_view source) override {
    const std::string t(tenant);
    std::string alarm_id;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      alarm_id.clear();
      if (auto s = ClearActiveIn(tx, t, std::string(device_id), std::string(type), ts, source, db_.Now(), alarm_id);
          !s.ok()) {
        return s;
      }
      if (alarm_id.empty()) {
        return absl::NotFoundError("no active alarm of type '" + std::string(type) + "' on device '" +
                                   std::string(device_id) + "'");
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return Read(t, alarm_id, false);
  }

  absl::Status ApplyRuleResults(std::string_view tenant, std::span<const AlarmChange> changes,
                                std::span<const RuleStateWrite> states) override {
    const std::string t(tenant);
    return db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::int64_t now = db_.Now();
      for (const AlarmChange& c : changes) {
        std::string alarm_id;
        absl::Status s;
        if (c.clear) {
          s = ClearActiveIn(tx, t, c.raise.device_id, c.raise.type, c.raise.ts, c.raise.source, now, alarm_id);
        } else {
          AlarmRaiseResult ignored;
          s = RaiseIn(tx, t, c.raise, now, ignored, alarm_id);
        }
        if (!s.ok()) return s;
      }
      for (const RuleStateWrite& w : states) {
        if (auto n = tx.Exec(kSaveRuleState, {t, w.rule_id, w.state, now, w.rule_updated_at}); !n.ok()) {
          return n.status();
        }
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<EdgeAlarmMarks> ApplyEdgeAlarms(std::string_view tenant, std::string_view edge_id,
                                                 std::span<const EdgeAlarmChange> changes) override {
    const std::string t(tenant), e(edge_id);
    std::uint64_t mark = 0, before = 0;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::int64_t now = db_.Now();
      bool found = false;
      // Locks the edge's row: a second session of the edge waits here, then sees the mark.
      auto q = tx.Query(kLockEdgeAlarmSeq, {t, e}, [&](const SqlRow& row) {
        found = true;
        mark = static_cast<std::uint64_t>(row.Int(0));
        return absl::OkStatus();
      });
      if (!q.ok()) return q;
      if (!found) return absl::NotFoundError("edge '" + e + "' not found");
      before = mark;
      std::uint64_t last = mark;
      for (const auto& [seq, change] : changes) {
        if (seq <= last) continue;
        last = seq;
        if (!change) continue;
        const AlarmChange& c = *change;
        std::string alarm_id;
        absl::Status applied;
        if (c.clear) {
          applied = ClearActiveIn(tx, t, c.raise.device_id, c.raise.type, c.raise.ts, c.raise.source, now, alarm_id);
        } else {
          AlarmRaiseResult ignored;
          applied = RaiseIn(tx, t, c.raise, now, ignored, alarm_id);
        }
        if (!applied.ok()) return applied;
      }
      if (last != mark) {
        if (auto n = tx.Exec(kSetEdgeAlarmSeq, {t, e, static_cast<std::int64_t>(last)}); !n.ok()) return n.status();
        mark = last;
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return EdgeAlarmMarks{before, mark};
  }

  absl::StatusOr<std::string> LoadRuleState(std::string_view tenant, std::string_view rule_id) override {
    std::string state;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      state.clear();
      return tx.Query(kLoadRuleState, {std::string(tenant), std::string(rule_id)}, [&](const SqlRow& row) {
        state = row.Text(0);
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    return state;
  }

  absl::StatusOr<v1::Alarm> GetAlarm(std::string_view tenant, std::string_view alarm_id) override {
    return Read(std::string(tenant), std::string(alarm_id), true);
  }

  absl::StatusOr<std::vector<v1::Alarm>> ListAlarms(std::string_view tenant, const AlarmListQuery& q) override {
    std::vector<v1::Alarm> out;
    const std::string t(tenant);
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      out.clear();
      return tx.Query(kListAlarms,
                      {t, q.device_id, q.type, std::int64_t{q.severity}, std::int64_t{q.status}, q.start, q.end,
                       q.before ? q.before->start_ts : std::int64_t{-1}, q.before ? q.before->alarm_id : std::string(),
                       std::int64_t{q.page_size} + 1},
                      [&](const SqlRow& row) {
                        out.push_back(AlarmFromRow(row, tenant));
                        return absl::OkStatus();
                      });
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::Alarm> AckAlarm(std::string_view tenant, std::string_view alarm_id, std::int64_t ts,
                                     std::string_view source) override {
    const std::string t(tenant), id(alarm_id);
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      auto n = tx.Exec(kAck, {t, id, kActiveUnack, kActiveAck, kClearedAck, ts, db_.Now(), kClearedUnack});
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::OkStatus();  // acknowledged already, or unknown (Read says)
      return Event(tx, t, id, "ACKNOWLEDGED", CurrentSeverity(tx, t, id), ts, source, "{}");
    });
    if (!s.ok()) return s;
    return Read(t, id, false);
  }

  absl::StatusOr<v1::Alarm> ClearAlarm(std::string_view tenant, std::string_view alarm_id, std::int64_t ts,
                                       std::string_view source) override {
    const std::string t(tenant), id(alarm_id);
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      auto n = tx.Exec(kClearById, {t, id, kActiveAck, kClearedAck, kClearedUnack, ts, db_.Now()});
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::OkStatus();
      return Event(tx, t, id, "CLEARED", CurrentSeverity(tx, t, id), ts, source, "{}");
    });
    if (!s.ok()) return s;
    return Read(t, id, false);
  }

 private:
  // A raise within a transaction: the occurrence of the active alarm, or a new one.
  static absl::Status RaiseIn(SqlTx& tx, const std::string& t, const AlarmRaise& raise, std::int64_t now,
                              AlarmRaiseResult& result, std::string& alarm_id) {
    const std::string values = StructJson(raise.values);
    const std::int64_t severity = raise.severity;
    alarm_id.clear();
    std::int64_t prev = 0;
    auto read = [&](const SqlRow& row) {
      alarm_id = row.Text(0);
      prev = row.Int(1);
      return absl::OkStatus();
    };
    if (auto q = tx.Query(kRaiseExisting, {t, raise.device_id, raise.type, severity, values, now}, read); !q.ok()) {
      return q;
    }
    if (alarm_id.empty()) {
      const std::string fresh = RandomId();
      auto q = tx.Query(kRaiseNew,
                        {t, fresh, raise.device_id, raise.type, severity, kActiveUnack, raise.rule_id, raise.ts, values,
                         now},
                        read);
      if (!q.ok()) return q;
      result.created = alarm_id == fresh;
    }
    result.severity_changed = !result.created && prev != severity;
    if (result.created) return Event(tx, t, alarm_id, "RAISED", severity, raise.ts, raise.source, values);
    if (result.severity_changed) return Event(tx, t, alarm_id, "SEVERITY_CHANGED", severity, raise.ts, raise.source, values);
    return absl::OkStatus();
  }

  // Clears the active alarm of (device, type), if there is one (alarm_id empty when not).
  static absl::Status ClearActiveIn(SqlTx& tx, const std::string& t, const std::string& device_id,
                                    const std::string& type, std::int64_t ts, std::string_view source,
                                    std::int64_t now, std::string& alarm_id) {
    alarm_id.clear();
    auto q = tx.Query(kClearActive, {t, device_id, type, kActiveAck, kClearedAck, kClearedUnack, ts, now},
                      [&](const SqlRow& row) {
                        alarm_id = row.Text(0);
                        return absl::OkStatus();
                      });
    if (!q.ok() || alarm_id.empty()) return q;
    return Event(tx, t, alarm_id, "CLEARED", CurrentSeverity(tx, t, alarm_id), ts, source, "{}");
  }

  static std::int64_t CurrentSeverity(SqlTx& tx, const std::string& tenant, const std::string& alarm_id) {
    std::int64_t severity = 0;
    (void)tx.Query(kSelectSeverity, {tenant, alarm_id}, [&](const SqlRow& row) {
      severity = row.Int(0);
      return absl::OkStatus();
    });
    return severity;
  }

  absl::StatusOr<v1::Alarm> Read(const std::string& tenant, const std::string& alarm_id, bool history) {
    std::optional<v1::Alarm> found;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      found.reset();
      auto q = tx.Query(kSelectAlarm, {tenant, alarm_id}, [&](const SqlRow& row) {
        found = AlarmFromRow(row, tenant);
        return absl::OkStatus();
      });
      if (!q.ok() || !found || !history) return q;
      return tx.Query(kSelectEvents, {tenant, alarm_id}, [&](const SqlRow& row) {
        v1::AlarmEvent* e = found->add_history();
        e->set_kind(row.Text(0));
        e->set_severity(static_cast<v1::AlarmSeverity>(row.Int(1)));
        e->set_at(row.Int(2));
        e->set_source(row.Text(3));
        StructFromJson(row.Text(4), e->mutable_values());
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    if (!found) return absl::NotFoundError("alarm '" + alarm_id + "' not found");
    return *found;
  }

  SqlRunner& db_;
};

}  // namespace

std::unique_ptr<RuleStore> NewRuleStore(SqlRunner& runner) { return std::make_unique<Rules>(runner); }
std::unique_ptr<AlarmStore> NewAlarmStore(SqlRunner& runner) { return std::make_unique<Alarms>(runner); }

}  // namespace strata::storage
