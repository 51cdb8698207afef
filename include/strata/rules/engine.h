// The rules engine (docs/rules.md): a rule's conditions in the expression language, its
// stateful clauses declared (for at least T, N times within W, no data for T, windows over
// event time), evaluated per device into alarm transitions.
//
// Pure: the engine has no clock, no I/O and no threads. Time is the readings' own (event
// time) and the `now` the caller passes to Tick; a transition's timestamp is derived from
// those alone (a DURATION fires at the moment the condition had held for T, whenever that was
// noticed), so the edge and the cloud produce the same transitions at the same timestamps
// from the same readings, and a state restored after a restart fires where it would have.
// The state is a value the caller keeps and persists (RuleState::Serialize).
//
//   auto rule = Rule::Compile(definition);            // a bad rule: INVALID_ARGUMENT, with where
//   RuleState state;                                  // or RuleState::Parse(saved)
//   for (const Transition& t : rule->Process(state, reading)) ...
//   for (const Transition& t : rule->Tick(state, now_ms)) ...
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <absl/status/statusor.h>

#include <strata/rules/expr.h>
#include <strata/rules/value.h>

namespace strata::rules {

// Most severe first.
enum class Severity : std::uint8_t { kCritical, kMajor, kMinor, kWarning, kIndeterminate };
std::string_view SeverityName(Severity s);  // "CRITICAL", ...
std::optional<Severity> ParseSeverity(std::string_view name);

enum class Aggregate : std::uint8_t { kAvg, kMin, kMax, kSum, kCount, kFirst, kLast };
std::string_view AggregateName(Aggregate a);  // "AVG", ...
std::optional<Aggregate> ParseAggregate(std::string_view name);

struct RuleDefinition {
  std::string id;
  std::string alarm_type;  // the alarm it raises: one active alarm per (device, type)

  // Raise conditions, each with the severity it raises; the most severe that holds wins, and
  // while the alarm is active its severity follows them (escalates and de-escalates).
  struct Level {
    Severity severity = Severity::kMajor;
    std::string condition;  // bool
  };
  std::vector<Level> raise;
  // When it clears: this condition (hysteresis, e.g. raise above 85, clear below 80); empty:
  // when no raise condition holds.
  std::string clear;

  // Stateful clauses (each 0 = off).
  std::int64_t for_ms = 0;            // a raise condition must hold for at least this long
  std::uint32_t times = 0;            // ... or hold in at least `times` readings
  std::int64_t within_ms = 0;         //     within this long
  std::int64_t clear_after_ms = 0;    // clear only when the clear has held this long (no recurrence)
  std::int64_t no_data_ms = 0;        // raise when a device sends nothing for this long
                                      // (with `raise` empty; the next reading clears it)

  // A window: the conditions see the aggregates of each closed window instead of readings.
  struct WindowSpec {
    std::int64_t size_ms = 0;         // 0: no window
    std::int64_t hop_ms = 0;          // 0 or size_ms: tumbling; less: hopping
    std::int64_t lateness_ms = 0;     // a window closes this long after its end (event time)
    struct Output {
      std::string name;               // the variable the conditions read
      Aggregate fn = Aggregate::kAvg;
      std::string key;                // the reading's key it aggregates
    };
    std::vector<Output> outputs;
  } window;
};

// A reading as a rule sees it.
struct Reading {
  std::string device_id;
  std::int64_t ts_ms = 0;  // event time
  std::vector<std::pair<std::string, Value>> values;
  // The device's attributes (map(string, string)) as the conditions' `attr`; null: none.
  Value attributes;
};

struct Transition {
  enum class Kind : std::uint8_t { kRaised, kSeverityChanged, kCleared };
  Kind kind = Kind::kRaised;
  std::string device_id;
  std::string alarm_type;
  Severity severity = Severity::kMajor;  // after the transition (kCleared: the last one)
  Severity previous = Severity::kMajor;  // kSeverityChanged: before it
  std::int64_t ts_ms = 0;
  // The values the conditions read when it happened (the reading's keys or the window's
  // outputs), for the alarm's details.
  std::vector<std::pair<std::string, Value>> values;
};
std::string_view TransitionName(Transition::Kind k);  // "RAISED", "SEVERITY_CHANGED", "CLEARED"

struct DeviceRuleState;  // internal

// What a rule remembers, per device: a value (copy it, persist it, restore it).
class RuleState {
 public:
  RuleState();
  ~RuleState();
  RuleState(const RuleState&);
  RuleState& operator=(const RuleState&);
  RuleState(RuleState&&) noexcept;
  RuleState& operator=(RuleState&&) noexcept;

  std::string Serialize() const;  // JSON
  static absl::StatusOr<RuleState> Parse(std::string_view serialized);

  std::size_t devices() const;
  bool active(const std::string& device_id) const;
  // Readings that came after their window had closed: counted, never used, never silent.
  std::uint64_t late_readings() const { return late_; }
  // Evaluations whose condition was an error (a missing key, a wrong type): counted, and the
  // condition does not hold.
  std::uint64_t eval_errors() const { return errors_; }
  // Devices refused because the state was at its bound (Rule::kMaxDevices).
  std::uint64_t refused_devices() const { return refused_; }

 private:
  friend class Rule;
  std::unordered_map<std::string, DeviceRuleState> devices_;  // serialised in id order
  std::uint64_t late_ = 0, errors_ = 0, refused_ = 0;
};

class Rule {
 public:
  static constexpr std::size_t kMaxDevices = 100000;
  static constexpr std::size_t kMaxOpenWindows = 64;  // size_ms / hop_ms

  // INVALID_ARGUMENT naming the field, e.g. "raise[1].condition: 1:14: ..."; UNIMPLEMENTED
  // for an expression outside the subset.
  static absl::StatusOr<Rule> Compile(RuleDefinition definition);

  const RuleDefinition& definition() const { return def_; }

  std::vector<Transition> Process(RuleState& state, const Reading& reading) const;
  // What time alone decides: no data for T, a DURATION or a pending clear that has elapsed
  // with no reading since, windows whose end plus lateness has passed.
  std::vector<Transition> Tick(RuleState& state, std::int64_t now_ms) const;

 private:
  struct Compiled;
  void Evaluate(DeviceRuleState& d, const std::string& device_id, std::int64_t ts, const Value& attributes,
                RuleState& state, std::vector<Transition>& out) const;
  std::vector<std::pair<std::string, Value>> ValuesOf(const DeviceRuleState& d) const;
  void Elapse(DeviceRuleState& d, const std::string& device_id, std::int64_t now, std::vector<Transition>& out) const;
  void CloseWindows(DeviceRuleState& d, const std::string& device_id, std::int64_t watermark, RuleState& state,
                    std::vector<Transition>& out) const;

  RuleDefinition def_;
  std::shared_ptr<const Compiled> compiled_;
};

// The time a rule's Tick is given, by its readings' clock (event time): the newest reading
// it took plus the time since it took it (by the caller's clock). So a device whose clock is
// behind, or a backlog of old readings, does not make time pass faster for the rule than it
// does for its readings; the edge and the cloud tick alike. No reading yet: no time.
class RuleClock {
 public:
  void Saw(std::int64_t ts_ms, std::int64_t local_now_ms) {
    if (ts_ms > newest_ts_) {
      newest_ts_ = ts_ms;
      seen_at_ = local_now_ms;
    }
  }
  std::optional<std::int64_t> Now(std::int64_t local_now_ms) const {
    if (newest_ts_ < 0) return std::nullopt;
    return newest_ts_ + std::max<std::int64_t>(0, local_now_ms - seen_at_);
  }

 private:
  std::int64_t newest_ts_ = -1;
  std::int64_t seen_at_ = 0;
};

}  // namespace strata::rules
