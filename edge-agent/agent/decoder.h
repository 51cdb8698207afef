// Turns one MQTT message (topic + payload) into readings, or into a rejection with a reason.
//
// Accepted payloads are the shapes devices already send to ThingsBoard:
//   {"temperature":21.5,"on":true}                  flat object, ts = receive time
//   {"ts":1700000000000,"values":{"temperature":21.5}}
//   [ either of the above, ... ]
// Values are numbers, booleans or strings, typed and checked by the telemetry model
// (<strata/telemetry/model.h>): "21" is an int64, "21.0" and "1e3" are doubles.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strata/v1/common.pb.h"

namespace strata::edge {

enum class RejectReason {
  kInvalidTopic,
  kInvalidDeviceId,
  kOversized,
  kInvalidJson,
  kWrongType,
  kNestedObject,
  kInvalidKey,
  kTooManyKeys,
  kUnknownDevice,
  kInvalidTimestamp,
  kInvalidValue,
};

// The label used in strata_edge_messages_rejected_total{reason=...}.
const char* ReasonLabel(RejectReason reason);
inline constexpr RejectReason kAllRejectReasons[] = {
    RejectReason::kInvalidTopic, RejectReason::kInvalidDeviceId, RejectReason::kOversized,
    RejectReason::kInvalidJson,  RejectReason::kWrongType,       RejectReason::kNestedObject,
    RejectReason::kInvalidKey,   RejectReason::kTooManyKeys,     RejectReason::kUnknownDevice,
    RejectReason::kInvalidTimestamp, RejectReason::kInvalidValue};

struct DecodeLimits {
  std::size_t max_payload_bytes = 64 * 1024;
  // Values in one message, over all its points.
  std::size_t max_keys = 1000;
};

struct EdgeItem {
  std::string device_id;
  std::string key;
  std::int64_t ts = 0;
  v1::Value value;
};

struct DecodeResult {
  bool ok = false;
  RejectReason reason = RejectReason::kInvalidJson;
  std::string detail;            // why, for the log line
  std::vector<EdgeItem> items;   // when ok
  // Some reading has no ts of its own and was given the receive time.
  bool stamped_on_receipt = false;
};

class Decoder {
 public:
  // topic_prefix: "v1/devices"; messages arrive on PREFIX/{device_id}/telemetry.
  Decoder(std::string topic_prefix, DecodeLimits limits);

  // Appends the readings of one message to `out.items` (cleared first).
  void Decode(std::string_view topic, std::string_view payload, std::int64_t receive_ts, DecodeResult& out) const;

  // The device id in a telemetry topic, or empty if the topic is not one.
  std::string_view DeviceOf(std::string_view topic) const;

 private:
  std::string prefix_;
  DecodeLimits limits_;
};

}  // namespace strata::edge
