#include "agent/decoder.h"

#include <nlohmann/json.hpp>
#include <strata/ids.h>
#include <strata/telemetry/json.h>
#include <strata/telemetry/model.h>

namespace strata::edge {
namespace {

using nlohmann::json;

constexpr std::string_view kTelemetrySuffix = "/telemetry";

void Reject(DecodeResult& out, RejectReason reason, std::string detail) {
  out.ok = false;
  out.reason = reason;
  out.detail = std::move(detail);
  out.items.clear();
}

RejectReason FromModel(telemetry::Reason reason, const json& v) {
  switch (reason) {
    case telemetry::Reason::kInvalidKey: return RejectReason::kInvalidKey;
    case telemetry::Reason::kInvalidTimestamp: return RejectReason::kInvalidTimestamp;
    case telemetry::Reason::kWrongType: return v.is_object() ? RejectReason::kNestedObject : RejectReason::kWrongType;
    case telemetry::Reason::kInvalidValue:
    case telemetry::Reason::kOk: break;
  }
  return RejectReason::kInvalidValue;
}

// Appends one key's value; false (with `out` set to the rejection) if it is not acceptable.
bool AddValue(const std::string& device, const std::string& key, const json& v, std::int64_t ts,
              const DecodeLimits& limits, DecodeResult& out) {
  if (auto verdict = telemetry::CheckKey(key); !verdict.ok()) {
    Reject(out, RejectReason::kInvalidKey, std::move(verdict.message));
    return false;
  }
  if (out.items.size() >= limits.max_keys) {
    Reject(out, RejectReason::kTooManyKeys, "more than " + std::to_string(limits.max_keys) + " values");
    return false;
  }
  EdgeItem item;
  if (auto verdict = telemetry::ValueFromJson(v, &item.value); !verdict.ok()) {
    Reject(out, FromModel(verdict.reason, v), "value of '" + key + "': " + verdict.message);
    return false;
  }
  item.device_id = device;
  item.key = key;
  item.ts = ts;
  out.items.push_back(std::move(item));
  return true;
}

bool AddPoint(const std::string& device, const json& point, std::int64_t receive_ts, const DecodeLimits& limits,
              DecodeResult& out) {
  if (!point.is_object()) {
    Reject(out, RejectReason::kWrongType, std::string("expected an object, got ") + point.type_name());
    return false;
  }
  auto values = point.find("values");
  if (values != point.end() && values->is_object()) {
    // {"ts":..,"values":{..}}: nothing else may sit beside them.
    std::int64_t ts = receive_ts;
    if (!point.contains("ts")) out.stamped_on_receipt = true;
    for (const auto& [k, v] : point.items()) {
      if (k == "values") continue;
      if (k != "ts") {
        Reject(out, RejectReason::kWrongType, "unexpected member '" + k + "' beside \"values\"");
        return false;
      }
      if (auto verdict = telemetry::TimestampFromJson(v, &ts); !verdict.ok()) {
        Reject(out, RejectReason::kInvalidTimestamp, std::move(verdict.message));
        return false;
      }
    }
    if (values->empty()) {
      Reject(out, RejectReason::kWrongType, "\"values\" is empty");
      return false;
    }
    for (const auto& [k, v] : values->items()) {
      if (!AddValue(device, k, v, ts, limits, out)) return false;
    }
    return true;
  }
  if (point.empty()) {
    Reject(out, RejectReason::kWrongType, "empty object");
    return false;
  }
  out.stamped_on_receipt = true;
  for (const auto& [k, v] : point.items()) {
    if (!AddValue(device, k, v, receive_ts, limits, out)) return false;
  }
  return true;
}

}  // namespace

const char* ReasonLabel(RejectReason reason) {
  switch (reason) {
    case RejectReason::kInvalidTopic: return "invalid_topic";
    case RejectReason::kInvalidDeviceId: return "invalid_device_id";
    case RejectReason::kOversized: return "oversized";
    case RejectReason::kInvalidJson: return "invalid_json";
    case RejectReason::kWrongType: return "wrong_type";
    case RejectReason::kNestedObject: return "nested_object";
    case RejectReason::kInvalidKey: return "invalid_key";
    case RejectReason::kTooManyKeys: return "too_many_keys";
    case RejectReason::kUnknownDevice: return "unknown_device";
    case RejectReason::kInvalidTimestamp: return "invalid_timestamp";
    case RejectReason::kInvalidValue: return "invalid_value";
  }
  return "unknown";
}

Decoder::Decoder(std::string topic_prefix, DecodeLimits limits) : prefix_(std::move(topic_prefix)), limits_(limits) {
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  prefix_ += '/';
}

std::string_view Decoder::DeviceOf(std::string_view topic) const {
  if (topic.size() <= prefix_.size() + kTelemetrySuffix.size() || topic.substr(0, prefix_.size()) != prefix_ ||
      topic.substr(topic.size() - kTelemetrySuffix.size()) != kTelemetrySuffix) {
    return {};
  }
  return topic.substr(prefix_.size(), topic.size() - prefix_.size() - kTelemetrySuffix.size());
}

void Decoder::Decode(std::string_view topic, std::string_view payload, std::int64_t receive_ts,
                     DecodeResult& out) const {
  out.items.clear();
  out.detail.clear();
  out.stamped_on_receipt = false;
  const std::string_view device = DeviceOf(topic);
  if (device.empty()) return Reject(out, RejectReason::kInvalidTopic, "not a telemetry topic: " + std::string(topic));
  if (auto s = ValidateId("device_id", device); !s.ok()) {
    return Reject(out, RejectReason::kInvalidDeviceId, std::string(s.message()));
  }
  if (payload.size() > limits_.max_payload_bytes) {
    return Reject(out, RejectReason::kOversized, std::to_string(payload.size()) + " bytes is over the limit of " +
                                                     std::to_string(limits_.max_payload_bytes));
  }
  auto parsed = telemetry::ParseBoundedJson(payload);
  if (!parsed.ok()) {
    return Reject(out, RejectReason::kInvalidJson, "payload is not valid JSON: " + std::string(parsed.status().message()));
  }
  const json& doc = *parsed;
  const std::string device_id(device);
  if (doc.is_array()) {
    if (doc.empty()) return Reject(out, RejectReason::kWrongType, "empty array");
    for (const auto& point : doc) {
      if (!AddPoint(device_id, point, receive_ts, limits_, out)) return;
    }
  } else if (!AddPoint(device_id, doc, receive_ts, limits_, out)) {
    return;
  }
  out.ok = true;
}

}  // namespace strata::edge
