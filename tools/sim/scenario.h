// The six application scenarios of the smart IoT system and the value model of each sensor:
// what a simulated device of a scenario measures, in what unit, and how its readings move
// (bounded random walks around a daily cycle, so values stay plausible however long a run is).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rng.h"

namespace strata::sim {

enum class Scenario { kManufacturing, kAgriculture, kGrid, kHealthcare, kTransportation, kEnvironment };

inline constexpr Scenario kAllScenarios[] = {Scenario::kManufacturing, Scenario::kAgriculture,
                                             Scenario::kGrid,          Scenario::kHealthcare,
                                             Scenario::kTransportation, Scenario::kEnvironment};

// "manufacturing", ...
std::string_view ScenarioName(Scenario s);
// The device id prefix: "mfg", "agri", "grid", "health", "traffic", "env".
std::string_view DeviceIdPrefix(Scenario s);
std::optional<Scenario> ParseScenario(std::string_view name);
// "all" or a comma-separated list of names (duplicates dropped, order kept). Throws
// std::invalid_argument on an unknown name or an empty list: it is start-up configuration.
std::vector<Scenario> ParseScenarioList(std::string_view list);

// The shape of a key's daily cycle, as a function of the hour of day (UTC, model time).
enum class Profile {
  kFlat,      // 0
  kDaily,     // cos(2*pi*(h - peak_hour)/24), in [-1, 1]
  kSolar,     // 0 at night, 1 at solar noon
  kRushHour,  // morning (08:00) and evening (18:00) peaks, about -0.3 at night
};

enum class Model {
  kWalk,   // mean-reverting walk around mean + amplitude * profile(h)
  kSolar,  // amplitude * profile(h) * a cloud factor walking in [walk_min, walk_max]
  kRatio,  // the previous key's value times a ratio walking in [walk_min, walk_max]
};

struct KeySpec {
  std::string_view key;   // snake_case telemetry key
  std::string_view unit;
  Model model;
  double mean;            // kWalk: centre; kSolar, kRatio: centre of the factor walk
  double min, max;        // hard bounds of the published value
  double sigma;           // step of the walk, per sample
  double reversion;       // pull back towards the target per sample, in (0, 1]
  Profile profile;
  double amplitude;
  double peak_hour;       // kDaily only
  int decimals;           // published precision
  bool integer;           // published as a JSON integer
  double walk_min = 0, walk_max = 0;  // bounds of the factor (kSolar, kRatio)
};

// The keys a device of scenario `s` publishes, in a fixed order.
std::span<const KeySpec> KeysOf(Scenario s);

// One simulated device: the state of each of its keys. Used from one thread.
class DeviceModel {
 public:
  // `seed` fixes the device's whole sequence of values.
  DeviceModel(Scenario scenario, std::uint64_t seed);

  // Advances every key by one sample; `model_ms` (ms since the epoch, UTC) drives the daily
  // cycles. Returns {"key": value, ...}, integers as JSON integers.
  nlohmann::json Sample(std::int64_t model_ms);

  Scenario scenario() const { return scenario_; }

 private:
  Scenario scenario_;
  std::span<const KeySpec> keys_;
  Rng rng_;
  std::vector<double> state_;  // kWalk: the value; kSolar, kRatio: the factor
  std::vector<double> bias_;   // this device's offset from the scenario's mean
};

// Rounds `v` to `decimals` places.
double RoundTo(double v, int decimals);

}  // namespace strata::sim
