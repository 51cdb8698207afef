// The edge rules (docs/rules.md, "Where rules run"): the EDGE rules of the config revision,
// evaluated by the same engine as the cloud's (strata::rules) on the readings of the
// revision's devices, before they go up and whether or not the cloud is reachable.
//
// Durable with the buffer: the transitions a group of readings makes are written in the same
// transaction as the readings (Buffer::Append's side write) into alarm_outbox, numbered for
// the uplink, which sends them until the cloud acknowledges them (EdgeAlarm, EdgeAlarmAck).
// The rules' states are saved every second with the buffer seq they cover (rules_seq); the
// buffer holds readings above it even once the cloud has them, and after a crash they are
// evaluated again from the saved states, so a DURATION that was 20 s along fires at the same
// timestamp after the restart. A transition made again that way is the row it was
// (alarm_outbox_once) and is sent once.
//
// Time: ticked by the pipeline thread on the rules' event clock (rules::RuleClock), as the
// cloud does, so that the two produce the same transitions at the same timestamps.
//
// Threads: Evaluate, Tick and Save run on the pipeline thread; SetConfig on the thread that
// applies revisions; ReportsAfter and Acked on the uplink's. The rules are guarded by mu_,
// the database by the buffer.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/statusor.h>

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/rules/engine.h>

#include "agent/buffer.h"
#include "agent/decoder.h"
#include "strata/v1/edgesync.pb.h"

namespace strata::edge {

// OK when every rule of the revision can run here: an EDGE rule with an id, distinct, that
// this edge's engine compiles (part of validating a revision).
absl::Status ValidateEdgeRules(const v1::EdgeConfig& config);

class EdgeRules {
 public:
  // Reads the saved states; the rules come with SetConfig.
  static absl::StatusOr<std::unique_ptr<EdgeRules>> Open(Buffer& buffer, MetricsRegistry& metrics, Clock clock);

  // The revision the agent runs (at start, and after every applied revision): its rules and
  // devices. A rule whose definition is unchanged (same evaluated_since: a new name keeps it)
  // keeps its state; a new or changed one starts afresh (the cloud ended the changed one's
  // alarms).
  void SetConfig(const v1::EdgeConfig& config);
  // After the first SetConfig: the readings the saved states do not cover (above rules_seq),
  // evaluated again. Call before ingest starts.
  absl::Status Replay();

  // Pipeline thread: the side write that evaluates `items` (committed readings, in order)
  // and writes the transitions with them; null when no rule runs.
  std::unique_ptr<Buffer::SideWrite> Evaluate(const std::vector<EdgeItem>& items);
  // The write went through: its transitions are for the uplink to send.
  void Committed();
  // Pipeline thread, often: ticks the rules each second (what time alone decides; written
  // at once, with the states) and saves their states every 5 s.
  void Tick();
  // Saves the states now (at stop).
  absl::Status Save();

  // The uplink (EdgeSync version 6): transitions not yet acknowledged above `after`, in seq
  // order.
  absl::StatusOr<std::vector<std::pair<std::int64_t, v1::EdgeAlarm>>> ReportsAfter(std::int64_t after,
                                                                                   std::size_t max);
  std::int64_t LastReportSeq() const { return last_seq_.load(); }
  void SetReportListener(std::function<void()> listener);
  void Acked(const v1::EdgeAlarmAck& ack);
  // The cloud has applied alarm seqs up to `mark` (Welcome): when this outbox numbers below
  // it (its file was lost or replaced), its pending transitions are renumbered above it and
  // so are the next, so that none is taken for one the cloud has.
  absl::Status RebaseAbove(std::uint64_t mark);

  std::size_t RuleCount() const;
  std::uint64_t Pending() const { return pending_.load(); }

 private:
  struct Loaded {
    v1::Rule proto;
    std::shared_ptr<const rules::Rule> rule;
    std::set<std::string> device_ids;
    rules::RuleState state;
    rules::RuleClock clock;
    bool dirty = false;
  };
  struct Device {
    std::string type;
    rules::Value attributes;
  };
  struct Made {
    v1::EdgeAlarm alarm;  // without seq
  };

  EdgeRules(Buffer& buffer, MetricsRegistry& metrics, Clock clock);
  // mu_ held: runs every rule in scope over one reading.
  void EvaluateLocked(rules::Reading& reading, std::vector<Made>& out);
  void TakeLocked(const Loaded& r, const std::vector<rules::Transition>& ts, std::vector<Made>& out);
  // Writes `made` into the outbox (on the buffer's connection, in its transaction).
  // Bounded at kMaxPendingAlarms unacknowledged rows: beyond, the oldest go (counted once the
  // write commits, in Written).
  absl::Status WriteOutbox(sqlite::Connection& db, std::uint64_t last_seq, const std::vector<Made>& made,
                           std::int64_t& max_seq);
  absl::Status SaveLocked();
  // Transitions up to outbox seq `max_seq` were written: the uplink is told.
  void Written(std::int64_t max_seq);

  Buffer& buffer_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::map<std::string, Loaded> rules_;          // guarded by mu_
  std::map<std::string, Device> devices_;        // guarded by mu_
  std::map<std::string, std::pair<std::int64_t, std::string>> saved_;  // guarded by mu_: rule -> (updated_at, state) read at open
  std::uint64_t rules_seq_ = 0;                  // guarded by mu_: what the saved states cover
  std::uint64_t evaluated_seq_ = 0;              // guarded by mu_: the last seq evaluated
  bool started_ = false;                         // guarded by mu_: Replay ran (start-up is over)
  std::vector<Made> ticked_;                     // guarded by mu_: what ticks decided, not yet written
  std::int64_t last_tick_ = 0, last_save_ = 0;   // pipeline thread
  std::int64_t committed_max_ = 0;               // pipeline thread: outbox seq after the last side write
  std::uint64_t committed_seq_ = 0;              // pipeline thread: buffer seq of the last side write
  std::atomic<std::int64_t> last_seq_{0};
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::int64_t> acked_mark_{0};    // the cloud acked every seq up to here
  std::atomic<std::int64_t> dropping_{0};      // dropped by a write not yet known to be committed
  std::atomic<std::int64_t> dropped_floor_{0};
  std::atomic<bool> told_dropped_{false};
  std::mutex listener_mu_;
  std::function<void()> listener_;  // guarded by listener_mu_

  Counter& evaluations_;
  Counter& transitions_;
  Counter& replayed_;
  Counter& save_failures_;
  Counter& refused_readings_;
  Counter& dropped_;
};

}  // namespace strata::edge
