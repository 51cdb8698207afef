#include "agent/edge_rules.h"

#include <spdlog/spdlog.h>
#include <strata/rules/proto.h>
#include <strata/status_macros.h>

namespace strata::edge {
namespace {

constexpr std::int64_t kTickMs = 1000;
// How often the states are saved; a crash evaluates the readings since again at start.
constexpr std::int64_t kSaveMs = 5000;
constexpr std::size_t kMaxTicked = 10000;
constexpr std::size_t kReplayChunk = 5000;

// A transition made again (a replay) is not inserted again; nor does it take a seq (an
// INSERT OR IGNORE would, and seqs are consecutive: pending = last seq - acked mark).
constexpr std::string_view kInsertOutbox =
    "INSERT INTO alarm_outbox (rule_id, rule_updated_at, device_id, kind, severity, ts, reading_seq, data)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE NOT EXISTS (SELECT 1 FROM alarm_outbox WHERE rule_id = ?1"
    " AND rule_updated_at = ?2 AND device_id = ?3 AND kind = ?4 AND severity = ?5 AND ts = ?6)";
constexpr std::string_view kMaxOutboxSeq = "SELECT COALESCE(MAX(seq), 0) FROM alarm_outbox";
// The cloud acks in seq order: everything up to the first unacknowledged seq is acked.
constexpr std::string_view kAckedMark =
    "SELECT COALESCE((SELECT MIN(seq) FROM alarm_outbox WHERE acked = 0) - 1,"
    " (SELECT COALESCE(MAX(seq), 0) FROM alarm_outbox))";
// Bounded: beyond this many unacknowledged transitions (a cloud away for very long, or one
// below version 6, and rules that flap), the oldest go, counted.
constexpr std::int64_t kMaxPendingAlarms = 100000;
constexpr std::string_view kCountUnackedUpTo = "SELECT COUNT(*) FROM alarm_outbox WHERE acked = 0 AND seq <= ?1";
constexpr std::string_view kDropUnackedUpTo = "DELETE FROM alarm_outbox WHERE acked = 0 AND seq <= ?1";
constexpr std::string_view kReadOutbox =
    "SELECT seq, data FROM alarm_outbox WHERE seq > ?1 AND acked = 0 ORDER BY seq LIMIT ?2";
constexpr std::string_view kAckOutbox = "UPDATE alarm_outbox SET acked = 1 WHERE seq <= ?1 AND acked = 0";
// An acknowledged transition goes once no replay could make it again.
constexpr std::string_view kForgetOutbox =
    "DELETE FROM alarm_outbox WHERE acked = 1"
    " AND reading_seq <= (SELECT value FROM buffer_meta WHERE key = 'rules_seq')";
constexpr std::string_view kLoadRulesSeq = "SELECT value FROM buffer_meta WHERE key = 'rules_seq'";
constexpr std::string_view kSaveRulesSeq = "UPDATE buffer_meta SET value = ?1 WHERE key = 'rules_seq'";
constexpr std::string_view kLoadStates = "SELECT rule_id, updated_at, state FROM rule_state";
constexpr std::string_view kSaveState =
    "INSERT INTO rule_state (rule_id, updated_at, state) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (rule_id) DO UPDATE SET updated_at = excluded.updated_at, state = excluded.state";
constexpr std::string_view kDeleteState = "DELETE FROM rule_state WHERE rule_id = ?1";

// Consecutive values of one device and time are one reading, as the cloud groups an edge's
// batches (rule_runner.cpp): the same stream makes the same readings on both sides.
template <typename Item, typename Fn>
void ForEachReading(const std::vector<Item>& items, Fn&& fn) {
  rules::Reading pending;
  bool have = false;
  for (const auto& r : items) {
    if (have && (r.device_id != pending.device_id || r.ts != pending.ts_ms)) {
      fn(pending);
      pending = {};
    }
    pending.device_id = r.device_id;
    pending.ts_ms = r.ts;
    pending.values.emplace_back(r.key, rules::ToRuleValue(r.value));
    have = true;
  }
  if (have) fn(pending);
}

}  // namespace

absl::Status ValidateEdgeRules(const v1::EdgeConfig& config) {
  std::set<std::string> ids;
  for (int i = 0; i < config.rules_size(); ++i) {
    const auto& r = config.rules(i);
    const std::string where = "rules[" + std::to_string(i) + "]";
    if (r.rule_id().empty()) return absl::InvalidArgumentError(where + ": no rule_id");
    if (!ids.insert(r.rule_id()).second) return absl::InvalidArgumentError(where + ": rule " + r.rule_id() + " twice");
    if (r.location() != v1::RULE_LOCATION_EDGE) {
      return absl::InvalidArgumentError(where + " (" + r.rule_id() + "): not an EDGE rule");
    }
    if (auto compiled = rules::CompileRule(r); !compiled.ok()) {
      return absl::InvalidArgumentError(where + " (" + r.rule_id() + "): " + std::string(compiled.status().message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EdgeRules>> EdgeRules::Open(Buffer& buffer, MetricsRegistry& metrics, Clock clock) {
  std::unique_ptr<EdgeRules> r(new EdgeRules(buffer, metrics, std::move(clock)));
  std::int64_t max_seq = 0, acked = 0;
  STRATA_RETURN_IF_ERROR(buffer.Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
    r->saved_.clear();
    STRATA_ASSIGN_OR_RETURN(auto seq, db.Prepare(kLoadRulesSeq));
    STRATA_ASSIGN_OR_RETURN(bool row, seq.Step());
    r->rules_seq_ = row ? static_cast<std::uint64_t>(seq.Int(0)) : 0;
    STRATA_ASSIGN_OR_RETURN(auto states, db.Prepare(kLoadStates));
    STRATA_RETURN_IF_ERROR(states.ForEachRow([&]() -> absl::Status {
      r->saved_[states.Text(0)] = {states.Int(1), states.Text(2)};
      return absl::OkStatus();
    }));
    STRATA_ASSIGN_OR_RETURN(max_seq, sqlite::QueryInt(db, kMaxOutboxSeq));
    STRATA_ASSIGN_OR_RETURN(acked, sqlite::QueryInt(db, kAckedMark));
    return absl::OkStatus();
  }));
  r->evaluated_seq_ = r->rules_seq_;
  r->last_seq_ = max_seq;
  r->acked_mark_ = acked;
  r->pending_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, max_seq - acked));
  // Until the rules are known, nothing above the saved states is let go.
  STRATA_RETURN_IF_ERROR(buffer.SetHold(r->rules_seq_));
  return r;
}

EdgeRules::EdgeRules(Buffer& buffer, MetricsRegistry& metrics, Clock clock)
    : buffer_(buffer),
      clock_(std::move(clock)),
      evaluations_(metrics.GetCounter("strata_edge_rule_evaluations_total",
                                      "Readings evaluated by edge rules (one per rule and reading)")),
      transitions_(metrics.GetCounter("strata_edge_rule_transitions_total",
                                      "Alarm transitions the edge rules made (raised, severity changed, cleared)")),
      replayed_(metrics.GetCounter("strata_edge_rule_replayed_readings_total",
                                   "Readings evaluated again at start: their rules' saved state did not cover them")),
      save_failures_(metrics.GetCounter("strata_edge_rule_store_failures_total",
                                        "Edge rule states or transitions that could not be written (retried)")),
      refused_readings_(metrics.GetCounter("strata_edge_rule_readings_unknown_device_total",
                                           "Readings of devices outside the config revision: no rule evaluates them")),
      dropped_(metrics.GetCounter("strata_edge_rule_alarms_dropped_total",
                                  "Alarm transitions dropped unsent: more than 100,000 waited for the cloud")) {
  metrics.AddCallbackGauge("strata_edge_rule_alarms_pending", "Alarm transitions of edge rules the cloud has not acknowledged",
                           [this] { return static_cast<double>(pending_.load()); });
  metrics.AddCallbackGauge("strata_edge_rules", "EDGE rules of the config revision this edge runs",
                           [this] { return static_cast<double>(RuleCount()); });
}

std::size_t EdgeRules::RuleCount() const {
  std::lock_guard lock(mu_);
  return rules_.size();
}

void EdgeRules::SetConfig(const v1::EdgeConfig& config) {
  std::lock_guard lock(mu_);
  const bool had_rules = !rules_.empty();
  std::map<std::string, Loaded> fresh;
  for (const auto& r : config.rules()) {
    auto it = rules_.find(r.rule_id());
    if (it != rules_.end() && it->second.proto.evaluated_since() == r.evaluated_since()) {
      it->second.proto = r;  // what it evaluates is the same (a new name, say): its state stays
      fresh.emplace(r.rule_id(), std::move(it->second));
      continue;
    }
    auto compiled = rules::CompileRule(r);  // checked with the revision
    if (!compiled.ok()) {
      spdlog::error("edge rules: rule {} does not compile: {}", r.rule_id(), compiled.status().ToString());
      continue;
    }
    Loaded l;
    l.proto = r;
    l.rule = std::make_shared<const rules::Rule>(*std::move(compiled));
    l.device_ids.insert(r.device_ids().begin(), r.device_ids().end());
    l.dirty = true;  // a new or changed rule's state replaces whatever was saved for it
    if (auto s = saved_.find(r.rule_id()); s != saved_.end()) {
      if (s->second.first == r.evaluated_since()) {
        if (auto state = rules::RuleState::Parse(s->second.second); state.ok()) {
          l.state = *std::move(state);
          l.dirty = false;
        } else {
          spdlog::warn("edge rules: the saved state of rule {} is unreadable ({}); it starts afresh", r.rule_id(),
                       state.status().ToString());
        }
      }
      saved_.erase(s);
    }
    fresh.emplace(r.rule_id(), std::move(l));
  }
  // Rules that went: their saved state goes at the next save.
  for (auto& [id, r] : rules_) {
    if (!fresh.count(id)) saved_[id] = {-1, {}};
  }
  rules_ = std::move(fresh);
  devices_.clear();
  for (const auto& d : config.devices()) devices_[d.device_id()] = {d.type(), rules::AttributesOf(d.attributes())};
  if (started_ && !had_rules && !rules_.empty()) {
    // Readings before now were never for these rules: nothing before them to replay; what
    // comes from now on is held until a save covers it.
    evaluated_seq_ = std::max(evaluated_seq_, buffer_.LastSeq());
    if (auto s = buffer_.SetHold(evaluated_seq_); !s.ok()) {
      spdlog::warn("edge rules: cannot hold the buffer's readings: {}", s.ToString());
    }
  }
  spdlog::info("edge rules: {} rule(s) over {} device(s)", rules_.size(), devices_.size());
}

void EdgeRules::TakeLocked(const Loaded& r, const std::vector<rules::Transition>& ts, std::vector<Made>& out) {
  for (const auto& t : ts) {
    Made m;
    m.alarm.set_rule_id(r.proto.rule_id());
    m.alarm.set_device_id(t.device_id);
    m.alarm.set_alarm_type(r.proto.alarm_type());
    m.alarm.set_kind(std::string(rules::TransitionName(t.kind)));
    m.alarm.set_severity(rules::ToProto(t.severity));
    m.alarm.set_ts(t.ts_ms);
    m.alarm.set_values_json(rules::ValuesJson(t.values));
    m.alarm.set_rule_updated_at(r.proto.evaluated_since());
    out.push_back(std::move(m));
    transitions_.Inc();
  }
}

void EdgeRules::EvaluateLocked(rules::Reading& reading, std::vector<Made>& out) {
  auto d = devices_.find(reading.device_id);
  if (d == devices_.end()) {
    refused_readings_.Inc();
    return;
  }
  reading.attributes = d->second.attributes;
  const std::int64_t now = clock_();
  for (auto& [id, r] : rules_) {
    const bool in_scope = !r.device_ids.empty() ? r.device_ids.count(reading.device_id) > 0
                                                : (r.proto.device_type().empty() || r.proto.device_type() == d->second.type);
    if (!in_scope) continue;
    auto made = r.rule->Process(r.state, reading);
    evaluations_.Inc();
    r.dirty = true;
    r.clock.Saw(reading.ts_ms, now);
    if (!made.empty()) TakeLocked(r, made, out);
  }
}

absl::Status EdgeRules::WriteOutbox(sqlite::Connection& db, std::uint64_t last_seq, const std::vector<Made>& made,
                                    std::int64_t& max_seq) {
  max_seq = 0;
  if (made.empty()) return absl::OkStatus();
  STRATA_ASSIGN_OR_RETURN(auto insert, db.Prepare(kInsertOutbox));
  for (const Made& m : made) {
    const auto& a = m.alarm;
    insert.Reset();
    STRATA_RETURN_IF_ERROR(insert.Bind(1, a.rule_id())
                               .Bind(2, a.rule_updated_at())
                               .Bind(3, a.device_id())
                               .Bind(4, a.kind())
                               .Bind(5, static_cast<std::int64_t>(a.severity()))
                               .Bind(6, a.ts())
                               .Bind(7, static_cast<std::int64_t>(last_seq))
                               .BindBlob(8, a.SerializeAsString())
                               .Run());
  }
  STRATA_ASSIGN_OR_RETURN(max_seq, sqlite::QueryInt(db, kMaxOutboxSeq));
  if (const std::int64_t floor = max_seq - kMaxPendingAlarms; floor > acked_mark_.load()) {
    STRATA_ASSIGN_OR_RETURN(auto n, sqlite::QueryInt(db, kCountUnackedUpTo, floor));
    STRATA_RETURN_IF_ERROR(sqlite::Exec(db, kDropUnackedUpTo, floor));
    // Counted as the transaction commits (a rollback drops nothing): see Written.
    dropping_ = n;
    dropped_floor_ = floor;
  }
  return absl::OkStatus();
}

std::unique_ptr<Buffer::SideWrite> EdgeRules::Evaluate(const std::vector<EdgeItem>& items) {
  auto made = std::make_shared<std::vector<Made>>();
  {
    std::lock_guard lock(mu_);
    if (rules_.empty()) return nullptr;
    ForEachReading(items, [&](rules::Reading& r) { EvaluateLocked(r, *made); });
  }
  return std::make_unique<Buffer::SideWrite>([this, made](sqlite::Connection& db, std::uint64_t last_seq) {
    committed_seq_ = last_seq;
    return WriteOutbox(db, last_seq, *made, committed_max_);
  });
}

void EdgeRules::Committed() {
  {
    std::lock_guard lock(mu_);
    evaluated_seq_ = std::max(evaluated_seq_, committed_seq_);
  }
  Written(committed_max_);
}

void EdgeRules::Written(std::int64_t max_seq) {
  if (const std::int64_t n = dropping_.exchange(0); n > 0) {
    dropped_.Inc(static_cast<std::uint64_t>(n));
    acked_mark_ = std::max(acked_mark_.load(), dropped_floor_.load());
    if (!told_dropped_.exchange(true)) {
      spdlog::error("edge rules: more than {} alarm transitions wait for the cloud; the oldest are dropped "
                    "(strata_edge_rule_alarms_dropped_total)",
                    kMaxPendingAlarms);
    }
  }
  const std::int64_t before = last_seq_.load();
  if (max_seq <= before) return;  // nothing new (made again by a replay, or none at all)
  last_seq_ = max_seq;
  pending_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, max_seq - acked_mark_.load()));
  std::lock_guard lock(listener_mu_);
  if (listener_) listener_();
}

absl::Status EdgeRules::Replay() {
  std::uint64_t after;
  {
    std::lock_guard lock(mu_);
    started_ = true;
    if (rules_.empty()) {
      // No rule to replay for: nothing needs holding.
      return buffer_.SetHold(UINT64_MAX);
    }
    after = rules_seq_;
  }
  std::uint64_t replayed = 0;
  while (true) {
    STRATA_ASSIGN_OR_RETURN(auto readings, buffer_.ReadAfter(after, kReplayChunk));
    if (readings.empty()) break;
    struct Item {
      std::string device_id, key;
      std::int64_t ts;
      v1::Value value;
    };
    std::vector<Item> items;
    items.reserve(readings.size());
    for (auto& r : readings) items.push_back({r.device_id(), r.key(), r.ts(), r.value()});
    const std::uint64_t last = readings.back().seq();
    std::vector<Made> made;
    {
      std::lock_guard lock(mu_);
      ForEachReading(items, [&](rules::Reading& r) { EvaluateLocked(r, made); });
    }
    std::int64_t max_seq = 0;
    STRATA_RETURN_IF_ERROR(buffer_.Transact([&](sqlite::Connection& db, std::uint64_t) {
      return WriteOutbox(db, last, made, max_seq);
    }));
    Written(max_seq);
    replayed += readings.size();
    after = last;
    std::lock_guard lock(mu_);
    evaluated_seq_ = std::max(evaluated_seq_, last);
  }
  if (replayed > 0) {
    replayed_.Inc(replayed);
    spdlog::info("edge rules: evaluated {} buffered reading(s) again that the saved states did not cover", replayed);
  }
  return Save();
}

void EdgeRules::Tick() {
  const std::int64_t now = clock_();
  const bool tick = now - last_tick_ >= kTickMs;
  const bool save = now - last_save_ >= kSaveMs;
  if (!tick && !save) return;
  std::lock_guard lock(mu_);
  if (tick) {
    last_tick_ = now;
    for (auto& [id, r] : rules_) {
      const auto rule_now = r.clock.Now(now);
      if (!rule_now) continue;  // no reading since the start: no clock yet
      auto out = r.rule->Tick(r.state, *rule_now);
      if (out.empty()) continue;
      r.dirty = true;
      TakeLocked(r, out, ticked_);
    }
  }
  // What time alone decided is written with the states that decided it, in one transaction:
  // no replay could make it again, so it must not be lost.
  if (!save && ticked_.empty()) return;
  last_save_ = now;
  if (auto s = SaveLocked(); !s.ok()) {
    save_failures_.Inc();
    spdlog::warn("edge rules: cannot save their states{} (again in a second): {}",
                 ticked_.empty() ? "" : " and " + std::to_string(ticked_.size()) + " transition(s)", s.ToString());
    if (ticked_.size() > kMaxTicked) {
      // Bounded: a disk that stays broken loses the oldest, counted.
      save_failures_.Inc(ticked_.size() - kMaxTicked);
      ticked_.erase(ticked_.begin(), ticked_.end() - kMaxTicked);
    }
    last_save_ = now - kSaveMs + kTickMs;
  }
}

absl::Status EdgeRules::Save() {
  std::lock_guard lock(mu_);
  return SaveLocked();
}

absl::Status EdgeRules::SaveLocked() {
  if (rules_.empty() && saved_.empty() && ticked_.empty()) return absl::OkStatus();
  const std::uint64_t covers = evaluated_seq_;
  std::int64_t max_seq = 0;
  STRATA_RETURN_IF_ERROR(buffer_.Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
    STRATA_RETURN_IF_ERROR(WriteOutbox(db, covers, ticked_, max_seq));
    STRATA_ASSIGN_OR_RETURN(auto save, db.Prepare(kSaveState));
    for (auto& [id, r] : rules_) {
      if (!r.dirty) continue;
      save.Reset();
      STRATA_RETURN_IF_ERROR(save.Bind(1, id).Bind(2, r.proto.evaluated_since()).Bind(3, r.state.Serialize()).Run());
    }
    STRATA_ASSIGN_OR_RETURN(auto del, db.Prepare(kDeleteState));
    for (const auto& [id, what] : saved_) {
      if (what.first != -1) continue;
      del.Reset();
      STRATA_RETURN_IF_ERROR(del.Bind(1, id).Run());
    }
    STRATA_ASSIGN_OR_RETURN(auto seq, db.Prepare(kSaveRulesSeq));
    STRATA_RETURN_IF_ERROR(seq.Bind(1, static_cast<std::int64_t>(covers)).Run());
    STRATA_ASSIGN_OR_RETURN(auto forget, db.Prepare(kForgetOutbox));
    return forget.Run();
  }));
  for (auto& [id, r] : rules_) r.dirty = false;
  std::erase_if(saved_, [](const auto& kv) { return kv.second.first == -1; });
  ticked_.clear();
  rules_seq_ = covers;
  Written(max_seq);
  // With no rule left, nothing needs holding.
  return buffer_.SetHold(rules_.empty() ? UINT64_MAX : covers);
}

absl::StatusOr<std::vector<std::pair<std::int64_t, v1::EdgeAlarm>>> EdgeRules::ReportsAfter(std::int64_t after,
                                                                                            std::size_t max) {
  std::vector<std::pair<std::int64_t, v1::EdgeAlarm>> out;
  auto s = buffer_.Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
    out.clear();
    STRATA_ASSIGN_OR_RETURN(auto read, db.Prepare(kReadOutbox));
    read.Bind(1, after).Bind(2, static_cast<std::int64_t>(max));
    return read.ForEachRow([&]() -> absl::Status {
      v1::EdgeAlarm a;
      if (!a.ParseFromString(read.Blob(1))) {
        return absl::DataLossError("alarm outbox row " + std::to_string(read.Int(0)) + " is corrupt");
      }
      a.set_seq(static_cast<std::uint64_t>(read.Int(0)));
      out.emplace_back(read.Int(0), std::move(a));
      return absl::OkStatus();
    });
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status EdgeRules::RebaseAbove(std::uint64_t mark) {
  if (mark <= static_cast<std::uint64_t>(last_seq_.load())) return absl::OkStatus();
  if (mark > static_cast<std::uint64_t>(INT64_MAX / 2)) return absl::OutOfRangeError("alarm mark out of range");
  const auto shift = static_cast<std::int64_t>(mark);
  std::int64_t max_seq = 0;
  STRATA_RETURN_IF_ERROR(buffer_.Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
    // Every pending seq is at most last_seq_ < mark: adding mark cannot collide.
    STRATA_RETURN_IF_ERROR(sqlite::Exec(db, "UPDATE alarm_outbox SET seq = seq + ?1", shift));
    STRATA_ASSIGN_OR_RETURN(max_seq, sqlite::QueryInt(db, kMaxOutboxSeq));
    max_seq = std::max(max_seq, shift);
    STRATA_ASSIGN_OR_RETURN(auto has, sqlite::QueryInt(db, "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'alarm_outbox'"));
    return has > 0 ? sqlite::Exec(db, "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'alarm_outbox'", max_seq)
                   : sqlite::Exec(db, "INSERT INTO sqlite_sequence (name, seq) VALUES ('alarm_outbox', ?1)", max_seq);
  }));
  spdlog::warn("edge rules: the cloud has applied alarms up to seq {}, above this edge's {}: its alarm outbox was lost "
               "or replaced; pending alarms are renumbered above it",
               mark, last_seq_.load());
  last_seq_ = max_seq;
  acked_mark_ = acked_mark_.load() + shift;
  return absl::OkStatus();
}

void EdgeRules::SetReportListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mu_);
  listener_ = std::move(listener);
}

void EdgeRules::Acked(const v1::EdgeAlarmAck& ack) {
  const auto seq = static_cast<std::int64_t>(std::min<std::uint64_t>(ack.seq(), INT64_MAX));
  auto s = buffer_.Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
    STRATA_ASSIGN_OR_RETURN(auto mark, db.Prepare(kAckOutbox));
    STRATA_RETURN_IF_ERROR(mark.Bind(1, seq).Run());
    STRATA_ASSIGN_OR_RETURN(auto forget, db.Prepare(kForgetOutbox));
    return forget.Run();
  });
  if (!s.ok()) {
    // Sent again on the next stream; the cloud applies each seq once.
    spdlog::warn("edge rules: cannot record the cloud's ack of alarms up to {}: {}", seq, s.ToString());
    return;
  }
  acked_mark_ = std::max(acked_mark_.load(), seq);
  pending_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, last_seq_.load() - acked_mark_.load()));
}

}  // namespace strata::edge
