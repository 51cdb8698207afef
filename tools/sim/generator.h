// The message stream of strata-sim: which device speaks next, what it measures, how the
// payload is shaped, and which messages are deliberately malformed. Pure computation (no
// broker, no clock): the caller passes the current time in, so a seeded run is reproducible
// and the whole stream is unit-testable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rng.h"
#include "scenario.h"

namespace strata::sim {

// The payload shapes the edge agent accepts (DESIGN.md, "Uplink").
enum class PayloadShape {
  kTs,     // {"ts":<unix ms>,"values":{...}}
  kFlat,   // {"key":value,...}; the receiver stamps the arrival time
  kMixed,  // ts and flat alternating, now and then an array of either
};
std::string_view PayloadShapeName(PayloadShape s);
std::optional<PayloadShape> ParsePayloadShape(std::string_view name);

// How a malformed message is wrong. Each kind breaks exactly one rule, so a receiver's
// rejection reason can be checked against it.
enum class MalformedKind {
  kInvalidJson,      // a good payload cut in half: not JSON at all
  kWrongType,        // valid JSON, but one reading's value is an array, not a number/bool/string
  kNestedObject,     // valid JSON, but one reading's value is an object {"value":..,"unit":..}
  kOversized,        // a good payload padded to oversize_bytes + 1 bytes
  kInvalidDeviceId,  // a good payload on a topic whose device id is over 128 bytes long
};
inline constexpr MalformedKind kAllMalformedKinds[] = {
    MalformedKind::kInvalidJson, MalformedKind::kWrongType, MalformedKind::kNestedObject,
    MalformedKind::kOversized, MalformedKind::kInvalidDeviceId};
// "invalid_json", "wrong_type", "nested_object", "oversized", "invalid_device_id"
std::string_view MalformedKindName(MalformedKind k);
// "all" or a comma-separated list of names. Throws std::invalid_argument on an unknown name.
std::vector<MalformedKind> ParseMalformedKinds(std::string_view list);

// Longer than the 128 bytes a device id may have (strata/ids.h).
inline constexpr std::size_t kInvalidDeviceIdBytes = 160;

struct GeneratorOptions {
  std::uint64_t seed = 1;
  std::vector<Scenario> scenarios{std::begin(kAllScenarios), std::end(kAllScenarios)};
  // Total devices, dealt out over `scenarios` in turn.
  std::size_t devices = 6;
  PayloadShape shape = PayloadShape::kTs;
  std::string topic_prefix = "v1/devices";
  // Exactly floor(n * ratio) of the first n messages are malformed, evenly spaced.
  double malformed_ratio = 0;
  // Cycled through in this order by successive malformed messages; empty = all.
  std::vector<MalformedKind> malformed_kinds;
  // Unset: ts is the clock (`now_ms` of Next), strictly increasing per device. Set: the i-th
  // sample (counting each point of an array) has ts = start_ts + i * step_ms.
  std::optional<std::int64_t> start_ts;
  // Model time between samples; drives the daily cycles (which start at 00:00 UTC when no
  // start_ts is given, so values never depend on the clock).
  std::int64_t step_ms = 100;
  std::size_t oversize_bytes = 64 * 1024;
};

struct Device {
  std::string id;  // "mfg-0001"
  Scenario scenario;
};

struct Message {
  std::string topic;
  std::string payload;
  std::size_t device = 0;  // index into Generator::devices()
  std::optional<MalformedKind> malformed;
  std::size_t readings = 0;  // key values carried; 0 when malformed
};

// Used from one thread.
class Generator {
 public:
  // Throws std::invalid_argument on options that cannot work (start-up misconfiguration).
  explicit Generator(GeneratorOptions options);

  // The next message. `now_ms` (unix ms) is used only for timestamps, and only when no
  // start_ts is set.
  Message Next(std::int64_t now_ms);

  const std::vector<Device>& devices() const { return devices_; }
  const GeneratorOptions& options() const { return options_; }
  std::uint64_t produced() const { return produced_; }

  // "PREFIX/{device_id}/telemetry"
  std::string TopicFor(std::string_view device_id) const;

 private:
  std::size_t NextDevice();
  // Timestamp and model time of the next sample of `device`.
  std::int64_t NextTs(std::size_t device, std::int64_t now_ms, std::int64_t& model_ms);
  nlohmann::json Point(std::size_t device, std::int64_t now_ms, bool with_ts);
  Message Good(std::size_t device, std::int64_t now_ms);
  Message Malformed(std::size_t device, std::int64_t now_ms, MalformedKind kind);

  GeneratorOptions options_;
  std::string prefix_;  // topic_prefix without a trailing '/'
  std::vector<Device> devices_;
  std::vector<DeviceModel> models_;
  std::vector<std::int64_t> last_ts_;  // per device, for clock timestamps
  Rng choices_;                        // device order, shapes
  std::vector<std::size_t> order_;     // this round's device order
  std::size_t order_pos_ = 0;
  std::uint64_t produced_ = 0;
  std::uint64_t malformed_ = 0;
  std::uint64_t samples_ = 0;
  std::uint64_t mixed_turn_ = 0;
};

}  // namespace strata::sim
