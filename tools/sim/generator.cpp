#include "generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace strata::sim {
namespace {

using nlohmann::json;

// In mixed shape, how often a good message is an array instead of a single object.
constexpr double kMixedArrayShare = 0.1;

std::string_view UnitOf(Scenario s, std::string_view key) {
  for (const KeySpec& k : KeysOf(s)) {
    if (k.key == key) return k.unit;
  }
  return "";
}

}  // namespace

std::string_view PayloadShapeName(PayloadShape s) {
  switch (s) {
    case PayloadShape::kTs: return "ts";
    case PayloadShape::kFlat: return "flat";
    case PayloadShape::kMixed: return "mixed";
  }
  return "unknown";
}

std::optional<PayloadShape> ParsePayloadShape(std::string_view name) {
  for (PayloadShape s : {PayloadShape::kTs, PayloadShape::kFlat, PayloadShape::kMixed}) {
    if (PayloadShapeName(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view MalformedKindName(MalformedKind k) {
  switch (k) {
    case MalformedKind::kInvalidJson: return "invalid_json";
    case MalformedKind::kWrongType: return "wrong_type";
    case MalformedKind::kNestedObject: return "nested_object";
    case MalformedKind::kOversized: return "oversized";
    case MalformedKind::kInvalidDeviceId: return "invalid_device_id";
  }
  return "unknown";
}

std::vector<MalformedKind> ParseMalformedKinds(std::string_view list) {
  if (list == "all") return {std::begin(kAllMalformedKinds), std::end(kAllMalformedKinds)};
  std::vector<MalformedKind> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (item.empty()) continue;
    auto it = std::find_if(std::begin(kAllMalformedKinds), std::end(kAllMalformedKinds),
                           [&](MalformedKind k) { return MalformedKindName(k) == item; });
    if (it == std::end(kAllMalformedKinds)) {
      throw std::invalid_argument("unknown malformed kind '" + std::string(item) +
                                  "' (expected all or invalid_json, wrong_type, nested_object, oversized, "
                                  "invalid_device_id)");
    }
    if (std::find(out.begin(), out.end(), *it) == out.end()) out.push_back(*it);
  }
  if (out.empty()) throw std::invalid_argument("no malformed kind given");
  return out;
}

Generator::Generator(GeneratorOptions options)
    : options_(std::move(options)), choices_(DeriveSeed(options_.seed, "choices")) {
  if (options_.devices == 0) throw std::invalid_argument("devices must be at least 1");
  if (options_.scenarios.empty()) throw std::invalid_argument("no scenario given");
  if (!(options_.malformed_ratio >= 0 && options_.malformed_ratio <= 1)) {
    throw std::invalid_argument("malformed ratio must be within [0, 1]");
  }
  if (options_.step_ms < 0) throw std::invalid_argument("step must not be negative");
  if (options_.start_ts && *options_.start_ts < 0) throw std::invalid_argument("start ts must not be negative");
  if (options_.oversize_bytes == 0) throw std::invalid_argument("oversize bytes must be at least 1");
  if (options_.malformed_kinds.empty()) {
    options_.malformed_kinds.assign(std::begin(kAllMalformedKinds), std::end(kAllMalformedKinds));
  }
  prefix_ = options_.topic_prefix;
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  if (prefix_.empty()) throw std::invalid_argument("topic prefix must not be empty");
  if (prefix_.find_first_of("+#") != std::string::npos) {
    throw std::invalid_argument("topic prefix must not contain MQTT wildcards");
  }

  std::vector<int> per_scenario(options_.scenarios.size(), 0);
  for (std::size_t i = 0; i < options_.devices; ++i) {
    const std::size_t s = i % options_.scenarios.size();
    const Scenario scenario = options_.scenarios[s];
    char id[64];
    std::snprintf(id, sizeof id, "%s-%04d", std::string(DeviceIdPrefix(scenario)).c_str(), ++per_scenario[s]);
    devices_.push_back({id, scenario});
    models_.emplace_back(scenario, DeriveSeed(options_.seed, std::string("values/") + id));
  }
  last_ts_.assign(devices_.size(), -1);
}

std::string Generator::TopicFor(std::string_view device_id) const {
  std::string t = prefix_;
  t += '/';
  t += device_id;
  t += "/telemetry";
  return t;
}

std::size_t Generator::NextDevice() {
  // Every device speaks once per round, in an order shuffled each round: per-device counts
  // stay even while malformed messages (evenly spaced) still land on every device.
  if (order_pos_ == order_.size()) {
    order_.resize(devices_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[choices_.Below(i)]);
    order_pos_ = 0;
  }
  return order_[order_pos_++];
}

std::int64_t Generator::NextTs(std::size_t device, std::int64_t now_ms, std::int64_t& model_ms) {
  const std::int64_t offset = static_cast<std::int64_t>(samples_++) * options_.step_ms;
  model_ms = options_.start_ts.value_or(0) + offset;
  if (options_.start_ts) return model_ms;
  // One value per (device, key, ts) is stored: never reuse a device's timestamp.
  const std::int64_t ts = std::max(now_ms, last_ts_[device] + 1);
  last_ts_[device] = ts;
  return ts;
}

json Generator::Point(std::size_t device, std::int64_t now_ms, bool with_ts) {
  std::int64_t model_ms = 0;
  const std::int64_t ts = NextTs(device, now_ms, model_ms);
  json values = models_[device].Sample(model_ms);
  if (!with_ts) return values;
  return json{{"ts", ts}, {"values", std::move(values)}};
}

Message Generator::Good(std::size_t device, std::int64_t now_ms) {
  Message m;
  m.device = device;
  m.topic = TopicFor(devices_[device].id);
  json doc;
  switch (options_.shape) {
    case PayloadShape::kTs:
      doc = Point(device, now_ms, true);
      m.readings = doc["values"].size();
      break;
    case PayloadShape::kFlat:
      doc = Point(device, now_ms, false);
      m.readings = doc.size();
      break;
    case PayloadShape::kMixed:
      if (choices_.Uniform() < kMixedArrayShare) {
        doc = json::array();
        if (choices_.Below(2) == 0) {
          // A device flushing a small backlog: 2-4 points, each with its own ts.
          const std::uint64_t n = 2 + choices_.Below(3);
          for (std::uint64_t i = 0; i < n; ++i) {
            doc.push_back(Point(device, now_ms, true));
            m.readings += doc.back()["values"].size();
          }
        } else {
          // One sample split over two flat objects with disjoint keys: the receiver stamps
          // both with the same arrival time, so no value is overwritten.
          json values = Point(device, now_ms, false);
          json first = json::object(), second = json::object();
          std::size_t i = 0;
          for (auto& [k, v] : values.items()) (i++ < values.size() / 2 ? first : second)[k] = v;
          m.readings = values.size();
          doc.push_back(std::move(first));
          doc.push_back(std::move(second));
        }
      } else {
        const bool with_ts = mixed_turn_++ % 2 == 0;
        doc = Point(device, now_ms, with_ts);
        m.readings = with_ts ? doc["values"].size() : doc.size();
      }
      break;
  }
  m.payload = doc.dump();
  return m;
}

Message Generator::Malformed(std::size_t device, std::int64_t now_ms, MalformedKind kind) {
  Message m;
  m.device = device;
  m.malformed = kind;
  m.topic = TopicFor(devices_[device].id);
  const bool with_ts = options_.shape == PayloadShape::kTs ||
                       (options_.shape == PayloadShape::kMixed && malformed_ % 2 == 0);
  json doc = Point(device, now_ms, with_ts);
  json& values = with_ts ? doc["values"] : doc;
  const std::string first = values.begin().key();
  switch (kind) {
    case MalformedKind::kInvalidJson: {
      // Any proper prefix of a JSON object is invalid: its closing brace is the last byte.
      const std::string good = doc.dump();
      m.payload = good.substr(0, good.size() / 2);
      return m;
    }
    case MalformedKind::kWrongType:
      values[first] = json::array({values[first]});
      break;
    case MalformedKind::kNestedObject:
      values[first] = json{{"value", values[first]}, {"unit", UnitOf(devices_[device].scenario, first)}};
      break;
    case MalformedKind::kOversized: {
      values["padding"] = "";
      const std::size_t base = doc.dump().size();
      const std::size_t want = options_.oversize_bytes + 1;
      // 'x' needs no escaping: each one adds exactly one byte.
      values["padding"] = std::string(want > base ? want - base : 0, 'x');
      break;
    }
    case MalformedKind::kInvalidDeviceId: {
      const std::string& id = devices_[device].id;
      m.topic = TopicFor(id + "-" + std::string(kInvalidDeviceIdBytes - id.size() - 1, 'x'));
      break;
    }
  }
  m.payload = doc.dump();
  return m;
}

Message Generator::Next(std::int64_t now_ms) {
  const std::size_t device = NextDevice();
  // Bresenham-style: the first n messages hold exactly floor(n * ratio) malformed ones.
  // (The epsilon absorbs rounding in n * ratio, e.g. 0.7 * 10.)
  const auto due = static_cast<std::uint64_t>(
      std::floor(static_cast<double>(produced_ + 1) * options_.malformed_ratio + 1e-9));
  ++produced_;
  if (due > malformed_) {
    const MalformedKind kind = options_.malformed_kinds[malformed_ % options_.malformed_kinds.size()];
    Message m = Malformed(device, now_ms, kind);
    ++malformed_;
    return m;
  }
  return Good(device, now_ms);
}

}  // namespace strata::sim
