// The cloud rules on live data: telemetry that was committed (Telemetry.Write, the edge hub's
// batches) is handed here without blocking, and one thread evaluates every enabled CLOUD
// rule whose scope holds the device (strata::rules), ticks them every second, and writes
// what they decided — alarm changes and the rules' states — in one transaction a round, so
// that after a crash the states and the alarms agree and a DURATION resumes where it was.
//
// Not yet: readings still queued here when the process dies are not evaluated after the
// restart (they are stored; a replay from the telemetry is the next step), and a full queue
// drops readings from evaluation (counted in strata_cloud_rule_readings_dropped_total).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <strata/bounded_queue.h>
#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/rules/engine.h>
#include <strata/stop_signal.h>

#include "storage/store.h"
#include "strata/v1/edgesync.pb.h"

namespace strata::services {

struct RuleRunnerOptions {
  // The longest a reading waits in the queue before a round takes it.
  std::chrono::milliseconds round{200};
  // How often time alone is let decide (no data, a DURATION with no reading since).
  std::chrono::milliseconds tick{1000};
  // How often the rules are read again (a rule created, changed or deleted is seen then).
  std::chrono::milliseconds reload{2000};
  // How often a rule's state is saved when it changed without a transition (with one, it is
  // saved in that round's transaction).
  std::chrono::milliseconds save{1000};
  // Readings waiting for a round; beyond, they are not evaluated (counted).
  std::size_t queue_readings = 100000;
};

class RuleRunner {
 public:
  RuleRunner(storage::Database& db, MetricsRegistry& metrics, Clock clock, RuleRunnerOptions options = {});
  ~RuleRunner();  // Stop()
  RuleRunner(const RuleRunner&) = delete;
  RuleRunner& operator=(const RuleRunner&) = delete;

  void Start();
  // Ends the thread after a last round (what it decided is written).
  void Stop();

  // Committed telemetry. Never blocks.
  void Submit(const std::string& tenant, const std::string& device_id, const std::vector<storage::Point>& points);
  void Submit(const std::string& tenant, std::span<const v1::TelemetryBatch* const> batches);

 private:
  struct Item {
    std::string tenant;
    rules::Reading reading;
  };
  struct LoadedRule {
    v1::Rule proto;
    std::shared_ptr<const rules::Rule> rule;
    std::set<std::string> device_ids;
    rules::RuleState state;
    bool dirty = false;  // changed since it was last saved
    // No reading since the start: no tick.
    rules::RuleClock clock;
  };
  struct Device {
    std::string type;
    rules::Value attributes;
    std::int64_t fetched_at = 0;
    bool exists = false;
  };

  void Loop();
  void Round(std::vector<Item>& items, bool tick, bool save, bool reload);
  void Reload(const std::string& tenant);
  const Device& DeviceOf(const std::string& tenant, const std::string& device_id, std::int64_t now);
  void Offer(std::string tenant, rules::Reading reading);

  storage::Database& db_;
  Clock clock_;
  RuleRunnerOptions options_;
  BoundedQueue<Item> queue_;
  StopSignal stop_;
  std::thread thread_;

  // The worker's own (no lock): tenant -> rule_id -> rule.
  std::map<std::string, std::map<std::string, LoadedRule>> rules_;
  std::map<std::pair<std::string, std::string>, Device> devices_;
  // Alarm changes a round could not write, per tenant: written first in the next round (a
  // raise again is an occurrence, a clear of a cleared alarm changes nothing).
  std::map<std::string, std::vector<storage::AlarmChange>> pending_;
  std::set<std::string> tenants_;  // guarded by tenants_mu_ (Submit adds, the worker reads)
  std::mutex tenants_mu_;

  Counter& evaluations_;
  Counter& transitions_;
  Counter& dropped_;
  Counter& failures_;
  Counter& saved_;
};

}  // namespace strata::services
