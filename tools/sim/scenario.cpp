#include "scenario.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace strata::sim {
namespace {

using P = Profile;
using M = Model;

// Means and bounds are typical field values; sigma and reversion set how fast a value wanders
// (stationary spread ~ sigma / sqrt(2 * reversion)). Bounds clamp the rare excursion.
//  key                    unit     model     mean    min     max     sigma  rev   profile      amp     peak dec int
constexpr KeySpec kManufacturing[] = {
    {"machine_temperature", "degC", M::kWalk, 65.0, 15.0, 120.0, 0.4, 0.05, P::kDaily, 6.0, 14, 1, false},
    {"vibration", "mm/s", M::kWalk, 3.5, 0.1, 25.0, 0.15, 0.1, P::kFlat, 0, 0, 2, false},
    {"spindle_speed", "rpm", M::kWalk, 12000, 0, 24000, 120, 0.1, P::kFlat, 0, 0, 0, true},
};
constexpr KeySpec kAgriculture[] = {
    {"soil_moisture", "%", M::kWalk, 32.0, 5.0, 60.0, 0.1, 0.02, P::kDaily, -3.0, 16, 1, false},
    {"air_temperature", "degC", M::kWalk, 18.0, -15.0, 45.0, 0.15, 0.05, P::kDaily, 7.0, 15, 1, false},
    {"humidity", "%RH", M::kWalk, 65.0, 10.0, 100.0, 0.5, 0.05, P::kDaily, -15.0, 15, 1, false},
    // Daylight up to 80 klx, scaled by a cloud factor.
    {"light", "lx", M::kSolar, 0.8, 0, 120000, 0.03, 0.05, P::kSolar, 80000, 0, 0, true, 0.15, 1.0},
};
constexpr KeySpec kGrid[] = {
    // EN 50160: 230 V +-10 %, 50 Hz +-0.05 Hz in normal operation; evening load sags voltage.
    {"voltage", "V", M::kWalk, 230.0, 207.0, 253.0, 0.5, 0.05, P::kDaily, -3.0, 19, 1, false},
    {"current", "A", M::kWalk, 16.0, 0.0, 63.0, 0.4, 0.05, P::kDaily, 8.0, 19, 2, false},
    {"power_factor", "", M::kWalk, 0.95, 0.70, 1.0, 0.004, 0.05, P::kFlat, 0, 0, 3, false},
    {"frequency", "Hz", M::kWalk, 50.0, 49.95, 50.05, 0.005, 0.1, P::kFlat, 0, 0, 3, false},
};
constexpr KeySpec kHealthcare[] = {
    {"heart_rate", "bpm", M::kWalk, 72.0, 40.0, 180.0, 1.2, 0.08, P::kDaily, 8.0, 15, 0, true},
    {"spo2", "%", M::kWalk, 97.5, 95.0, 100.0, 0.3, 0.1, P::kFlat, 0, 0, 0, true},
    {"body_temperature", "degC", M::kWalk, 36.8, 35.5, 38.5, 0.03, 0.05, P::kDaily, 0.3, 18, 1, false},
};
constexpr KeySpec kTransportation[] = {
    {"vehicle_count", "vehicles", M::kWalk, 40.0, 0.0, 400.0, 3.0, 0.1, P::kRushHour, 60.0, 0, 0, true},
    {"average_speed", "km/h", M::kWalk, 62.0, 5.0, 130.0, 1.0, 0.08, P::kRushHour, -25.0, 0, 1, false},
    {"lane_occupancy", "%", M::kWalk, 14.0, 0.0, 100.0, 0.6, 0.08, P::kRushHour, 30.0, 0, 1, false},
};
constexpr KeySpec kEnvironment[] = {
    {"pm2_5", "ug/m3", M::kWalk, 18.0, 0.0, 500.0, 0.5, 0.03, P::kRushHour, 10.0, 0, 1, false},
    // PM10 includes PM2.5: the ratio keeps pm10 >= pm2_5.
    {"pm10", "ug/m3", M::kRatio, 1.8, 0.0, 600.0, 0.02, 0.05, P::kFlat, 0, 0, 1, false, 1.2, 3.0},
    {"no2", "ug/m3", M::kWalk, 30.0, 0.0, 400.0, 0.8, 0.05, P::kRushHour, 20.0, 0, 1, false},
    // Photochemical: peaks in the afternoon sun.
    {"o3", "ug/m3", M::kWalk, 60.0, 0.0, 300.0, 1.0, 0.05, P::kDaily, 30.0, 15, 1, false},
};

double ProfileAt(const KeySpec& k, double hour) {
  switch (k.profile) {
    case P::kFlat: return 0;
    case P::kDaily: return std::cos(2 * std::numbers::pi * (hour - k.peak_hour) / 24.0);
    case P::kSolar:
      if (hour <= 6 || hour >= 18) return 0;
      return std::pow(std::sin(std::numbers::pi * (hour - 6) / 12.0), 1.2);
    case P::kRushHour: {
      const double am = (hour - 8) / 1.5, pm = (hour - 18) / 2.0;
      return std::exp(-0.5 * am * am) + std::exp(-0.5 * pm * pm) - 0.3;
    }
  }
  return 0;
}

double StationarySpread(const KeySpec& k) { return k.sigma / std::sqrt(k.reversion * (2 - k.reversion)); }

double HourOf(std::int64_t model_ms) {
  constexpr std::int64_t kDayMs = 24LL * 3600 * 1000;
  std::int64_t in_day = model_ms % kDayMs;
  if (in_day < 0) in_day += kDayMs;
  return static_cast<double>(in_day) / 3600000.0;
}

}  // namespace

std::string_view ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kManufacturing: return "manufacturing";
    case Scenario::kAgriculture: return "agriculture";
    case Scenario::kGrid: return "grid";
    case Scenario::kHealthcare: return "healthcare";
    case Scenario::kTransportation: return "transportation";
    case Scenario::kEnvironment: return "environment";
  }
  return "unknown";
}

std::string_view DeviceIdPrefix(Scenario s) {
  switch (s) {
    case Scenario::kManufacturing: return "mfg";
    case Scenario::kAgriculture: return "agri";
    case Scenario::kGrid: return "grid";
    case Scenario::kHealthcare: return "health";
    case Scenario::kTransportation: return "traffic";
    case Scenario::kEnvironment: return "env";
  }
  return "dev";
}

std::optional<Scenario> ParseScenario(std::string_view name) {
  for (Scenario s : kAllScenarios) {
    if (ScenarioName(s) == name) return s;
  }
  return std::nullopt;
}

std::vector<Scenario> ParseScenarioList(std::string_view list) {
  if (list == "all") return {std::begin(kAllScenarios), std::end(kAllScenarios)};
  std::vector<Scenario> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    auto s = ParseScenario(item);
    if (!s) {
      throw std::invalid_argument("unknown scenario '" + std::string(item) +
                                  "' (expected all or manufacturing, agriculture, grid, healthcare, "
                                  "transportation, environment)");
    }
    if (std::find(out.begin(), out.end(), *s) == out.end()) out.push_back(*s);
  }
  if (out.empty()) throw std::invalid_argument("no scenario given");
  return out;
}

std::span<const KeySpec> KeysOf(Scenario s) {
  switch (s) {
    case Scenario::kManufacturing: return kManufacturing;
    case Scenario::kAgriculture: return kAgriculture;
    case Scenario::kGrid: return kGrid;
    case Scenario::kHealthcare: return kHealthcare;
    case Scenario::kTransportation: return kTransportation;
    case Scenario::kEnvironment: return kEnvironment;
  }
  return {};
}

double RoundTo(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

DeviceModel::DeviceModel(Scenario scenario, std::uint64_t seed)
    : scenario_(scenario), keys_(KeysOf(scenario)), rng_(seed) {
  state_.reserve(keys_.size());
  bias_.reserve(keys_.size());
  for (const KeySpec& k : keys_) {
    // Devices of one scenario differ a little in their long-run level and start spread out.
    const double spread = StationarySpread(k);
    const double bias = k.model == M::kWalk ? 0.5 * spread * rng_.Normal() : 0.0;
    const double lo = k.model == M::kWalk ? k.min : k.walk_min;
    const double hi = k.model == M::kWalk ? k.max : k.walk_max;
    bias_.push_back(bias);
    state_.push_back(std::clamp(k.mean + bias + spread * rng_.Normal(), lo, hi));
  }
}

nlohmann::json DeviceModel::Sample(std::int64_t model_ms) {
  const double hour = HourOf(model_ms);
  nlohmann::json out = nlohmann::json::object();
  double previous = 0;  // the last published value, for kRatio
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    const KeySpec& k = keys_[i];
    double& x = state_[i];
    double value = 0;
    switch (k.model) {
      case M::kWalk: {
        const double target = k.mean + bias_[i] + k.amplitude * ProfileAt(k, hour);
        x = std::clamp(x + k.reversion * (target - x) + k.sigma * rng_.Normal(), k.min, k.max);
        value = x;
        break;
      }
      case M::kSolar:
      case M::kRatio: {
        x = std::clamp(x + k.reversion * (k.mean - x) + k.sigma * rng_.Normal(), k.walk_min, k.walk_max);
        value = k.model == M::kSolar ? k.amplitude * ProfileAt(k, hour) * x : previous * x;
        break;
      }
    }
    value = std::clamp(RoundTo(value, k.decimals), k.min, k.max);
    previous = value;
    if (k.integer) {
      out[std::string(k.key)] = static_cast<std::int64_t>(std::llround(value));
    } else {
      out[std::string(k.key)] = value;
    }
  }
  return out;
}

}  // namespace strata::sim
