#include "services/rule_runner.h"

#include <algorithm>
#include <iterator>

#include <spdlog/spdlog.h>

#include "services/rules_service.h"

namespace strata::services {
namespace {

constexpr std::int64_t kDeviceCacheMs = 30000;
constexpr std::size_t kMaxCachedDevices = 100000;
constexpr std::size_t kMaxTenants = 10000;

}  // namespace

RuleRunner::RuleRunner(storage::Database& db, MetricsRegistry& metrics, Clock clock, RuleRunnerOptions options)
    : db_(db),
      clock_(std::move(clock)),
      options_(options),
      queue_(options.queue_readings),
      evaluations_(metrics.GetCounter("strata_cloud_rule_evaluations_total",
                                      "Readings evaluated by cloud rules (one per rule and reading)")),
      transitions_(metrics.GetCounter("strata_cloud_rule_transitions_total",
                                      "Alarm transitions the cloud rules decided (raised, severity changed, cleared)")),
      dropped_(metrics.GetCounter("strata_cloud_rule_readings_dropped_total",
                                  "Stored readings the cloud rules did not evaluate: their queue was full")),
      failures_(metrics.GetCounter("strata_cloud_rule_store_failures_total",
                                   "Rounds whose alarm changes and rule states could not be written")),
      saved_(metrics.GetCounter("strata_cloud_rule_states_saved_total", "Rule states written to the database")) {}

RuleRunner::~RuleRunner() { Stop(); }

void RuleRunner::Start() { thread_ = std::thread([this] { Loop(); }); }

void RuleRunner::Stop() {
  stop_.Stop();
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

void RuleRunner::Offer(std::string tenant, rules::Reading reading) {
  {
    std::lock_guard lock(tenants_mu_);
    if (tenants_.size() < kMaxTenants) tenants_.insert(tenant);
  }
  if (!queue_.TryPush(Item{std::move(tenant), std::move(reading)})) dropped_.Inc();
}

void RuleRunner::Submit(const std::string& tenant, const std::string& device_id,
                        const std::vector<storage::Point>& points) {
  // One reading per timestamp, in time order.
  std::map<std::int64_t, rules::Reading> by_ts;
  for (const auto& p : points) {
    auto& r = by_ts[p.ts];
    r.device_id = device_id;
    r.ts_ms = p.ts;
    r.values.emplace_back(p.key, ToRuleValue(p.value));
  }
  for (auto& [ts, r] : by_ts) Offer(tenant, std::move(r));
}

void RuleRunner::Submit(const std::string& tenant, std::span<const v1::TelemetryBatch* const> batches) {
  // A batch holds the edge's readings in order: consecutive values of one device and time
  // are one reading.
  rules::Reading pending;
  bool have = false;
  for (const v1::TelemetryBatch* b : batches) {
    for (const auto& r : b->readings()) {
      if (have && (r.device_id() != pending.device_id || r.ts() != pending.ts_ms)) {
        Offer(tenant, std::move(pending));
        pending = {};
      }
      pending.device_id = r.device_id();
      pending.ts_ms = r.ts();
      pending.values.emplace_back(r.key(), ToRuleValue(r.value()));
      have = true;
    }
  }
  if (have) Offer(tenant, std::move(pending));
}

void RuleRunner::Loop() {
  std::int64_t last_tick = 0, last_save = 0, last_reload = -1;
  std::vector<Item> items;
  while (true) {
    items.clear();
    const bool open = queue_.PopBatch(items, 4096, options_.round);
    const std::int64_t now = clock_();
    const bool stopping = stop_.stopped() || !open;
    const bool reload = last_reload < 0 || now - last_reload >= options_.reload.count();
    const bool tick = now - last_tick >= options_.tick.count();
    const bool save = stopping || now - last_save >= options_.save.count();
    if (reload) last_reload = now;
    if (tick) last_tick = now;
    if (save) last_save = now;
    Round(items, tick, save, reload);
    if (stopping && items.empty()) return;
  }
}

void RuleRunner::Reload(const std::string& tenant) {
  // Every page first: a failure halfway keeps the rules it has, untouched.
  std::vector<v1::Rule> all;
  std::string after;
  while (true) {
    auto page = db_.Rules().ListRules(tenant, 1000, after);
    if (!page.ok()) {
      spdlog::warn("cloud rules: cannot read the rules of tenant {}: {}", tenant, page.status().ToString());
      return;
    }
    const bool more = page->size() > 1000;
    if (more) page->resize(1000);
    for (auto& r : *page) all.push_back(std::move(r));
    if (!more || page->empty()) break;
    after = all.back().rule_id();
  }
  auto& current = rules_[tenant];
  std::map<std::string, LoadedRule> fresh;
  for (auto& r : all) {
    if (!r.enabled() || r.location() != v1::RULE_LOCATION_CLOUD) continue;
    auto it = current.find(r.rule_id());
    if (it != current.end() && it->second.proto.updated_at() == r.updated_at()) {
      fresh.emplace(r.rule_id(), std::move(it->second));
      continue;
    }
    // New or changed: compiled again, and its state is what the database has (none after a
    // change: the store drops it).
    auto compiled = CheckRule(r);
    if (!compiled.ok()) {
      spdlog::warn("cloud rules: rule {} of tenant {} does not compile: {}", r.rule_id(), tenant,
                   compiled.status().ToString());
      continue;
    }
    auto saved = db_.Alarms().LoadRuleState(tenant, r.rule_id());
    if (!saved.ok()) {
      // Not read: the rule waits for the next reload rather than start afresh over its state.
      spdlog::warn("cloud rules: cannot read the state of rule {}: {}", r.rule_id(), saved.status().ToString());
      if (it != current.end()) fresh.emplace(r.rule_id(), std::move(it->second));
      continue;
    }
    LoadedRule loaded;
    loaded.rule = std::make_shared<const rules::Rule>(std::move(*compiled));
    loaded.device_ids.insert(r.device_ids().begin(), r.device_ids().end());
    if (!saved->empty()) {
      auto state = rules::RuleState::Parse(*saved);
      if (state.ok()) {
        loaded.state = std::move(*state);
      } else {
        spdlog::warn("cloud rules: the saved state of rule {} is unreadable ({}); it starts afresh", r.rule_id(),
                     state.status().ToString());
      }
    }
    loaded.proto = std::move(r);
    fresh.emplace(loaded.proto.rule_id(), std::move(loaded));
  }
  current = std::move(fresh);
}

const RuleRunner::Device& RuleRunner::DeviceOf(const std::string& tenant, const std::string& device_id,
                                               std::int64_t now) {
  const auto key = std::make_pair(tenant, device_id);
  auto it = devices_.find(key);
  if (it != devices_.end() && now - it->second.fetched_at < kDeviceCacheMs) return it->second;
  if (it == devices_.end() && devices_.size() >= kMaxCachedDevices) devices_.clear();
  Device& d = devices_[key];
  d.fetched_at = now;
  auto got = db_.Devices().GetDevice(tenant, device_id);
  d.exists = got.ok();
  if (got.ok()) {
    d.type = got->type();
    d.attributes = AttributesOf(*got);
  }
  return d;
}

void RuleRunner::Round(std::vector<Item>& items, bool tick, bool save, bool reload) {
  std::set<std::string> tenants;
  {
    std::lock_guard lock(tenants_mu_);
    tenants = tenants_;
  }
  if (reload) {
    for (const auto& t : tenants) Reload(t);
  }
  // A tenant seen for the first time has its rules read before its first readings go by.
  for (const Item& item : items) {
    if (!rules_.count(item.tenant)) Reload(item.tenant);
  }
  const std::int64_t now = clock_();
  std::map<std::string, std::vector<storage::AlarmChange>> changes;
  auto take = [&](const std::string& tenant, const LoadedRule& r, const std::vector<rules::Transition>& ts) {
    for (const auto& t : ts) {
      storage::AlarmChange c;
      c.clear = t.kind == rules::Transition::Kind::kCleared;
      c.raise.device_id = t.device_id;
      c.raise.type = r.proto.alarm_type();
      c.raise.severity = ToProto(t.severity);
      c.raise.rule_id = r.proto.rule_id();
      c.raise.ts = t.ts_ms;
      c.raise.source = "rule:" + r.proto.rule_id();
      c.raise.values = ToStruct(t.values);
      changes[tenant].push_back(std::move(c));
      transitions_.Inc();
    }
  };
  std::map<std::string, std::set<std::string>> with_transitions;
  for (Item& item : items) {
    auto rs = rules_.find(item.tenant);
    if (rs == rules_.end() || rs->second.empty()) continue;
    const Device& device = DeviceOf(item.tenant, item.reading.device_id, now);
    if (!device.exists) continue;
    item.reading.attributes = device.attributes;
    for (auto& [id, r] : rs->second) {
      const bool in_scope = !r.device_ids.empty() ? r.device_ids.count(item.reading.device_id) > 0
                                                  : (r.proto.device_type().empty() || r.proto.device_type() == device.type);
      if (!in_scope) continue;
      auto out = r.rule->Process(r.state, item.reading);
      evaluations_.Inc();
      r.dirty = true;
      r.clock.Saw(item.reading.ts_ms, now);
      if (!out.empty()) {
        take(item.tenant, r, out);
        with_transitions[item.tenant].insert(id);
      }
    }
  }
  if (tick) {
    for (auto& [tenant, rs] : rules_) {
      for (auto& [id, r] : rs) {
        const auto rule_now = r.clock.Now(now);
        if (!rule_now) continue;  // no reading since this process started: no clock yet
        auto out = r.rule->Tick(r.state, *rule_now);
        if (out.empty()) continue;
        r.dirty = true;
        take(tenant, r, out);
        with_transitions[tenant].insert(id);
      }
    }
  }
  // One transaction per tenant: its alarm changes and the states of the rules that made
  // them (and, every `save`, of every rule that changed).
  for (auto& [tenant, rs] : rules_) {
    std::vector<storage::RuleStateWrite> states;
    const auto& made = with_transitions[tenant];
    for (auto& [id, r] : rs) {
      if (r.dirty && (save || made.count(id) > 0)) states.push_back({id, r.state.Serialize(), r.proto.updated_at()});
    }
    auto& tenant_changes = changes[tenant];
    auto& waiting = pending_[tenant];
    if (!waiting.empty()) {
      tenant_changes.insert(tenant_changes.begin(), std::make_move_iterator(waiting.begin()),
                            std::make_move_iterator(waiting.end()));
      waiting.clear();
    }
    if (states.empty() && tenant_changes.empty()) continue;
    if (auto s = db_.Alarms().ApplyRuleResults(tenant, tenant_changes, states); !s.ok()) {
      failures_.Inc();
      spdlog::warn("cloud rules: tenant {}: {} alarm change(s) and {} state(s) not written (again next round): {}",
                   tenant, tenant_changes.size(), states.size(), s.ToString());
      // Bounded: a database that stays away for long loses the oldest changes, counted.
      constexpr std::size_t kMaxPending = 100000;
      if (tenant_changes.size() > kMaxPending) {
        tenant_changes.erase(tenant_changes.begin(), tenant_changes.end() - kMaxPending);
      }
      waiting = std::move(tenant_changes);
      continue;  // the states stay dirty and go with the next round
    }
    for (auto& [id, r] : rs) {
      if (r.dirty && (save || made.count(id) > 0)) r.dirty = false;
    }
    saved_.Inc(states.size());
  }
}

}  // namespace strata::services
