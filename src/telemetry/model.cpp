#include <strata/telemetry/model.h>

#include <charconv>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>
#include <utf8cpp/utf8.h>

#include <strata/ids.h>

namespace strata::telemetry {
namespace {

Verdict Fail(Reason reason, std::string message) { return Verdict{reason, std::move(message)}; }

std::string TsRange() {
  return std::to_string(kMinTs) + ".." + std::to_string(kMaxTs) + " (1970-01-01 to 9999-12-31 UTC, in milliseconds)";
}

}  // namespace

const char* ReasonLabel(Reason reason) {
  switch (reason) {
    case Reason::kOk: return "ok";
    case Reason::kInvalidKey: return "invalid_key";
    case Reason::kInvalidTimestamp: return "invalid_timestamp";
    case Reason::kInvalidValue: return "invalid_value";
    case Reason::kWrongType: return "wrong_type";
  }
  return "unknown";
}

absl::Status Verdict::ToStatus(std::string_view context) const {
  if (ok()) return absl::OkStatus();
  if (context.empty()) return absl::InvalidArgumentError(message);
  return absl::InvalidArgumentError(std::string(context) + ": " + message);
}

Verdict CheckKey(std::string_view key) {
  if (auto s = ValidateKey(key); !s.ok()) return Fail(Reason::kInvalidKey, std::string(s.message()));
  return {};
}

Verdict CheckTimestamp(std::int64_t ts) {
  if (ts < kMinTs || ts > kMaxTs) {
    return Fail(Reason::kInvalidTimestamp, "ts " + std::to_string(ts) + " is outside " + TsRange());
  }
  return {};
}

Verdict CheckValue(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kDoubleValue:
      // Infinities are stored (both databases and protobuf's JSON hold them); NaN is not a
      // value anyone can compare or aggregate.
      if (std::isnan(value.double_value())) return Fail(Reason::kInvalidValue, "NaN is not a telemetry value");
      return {};
    case v1::Value::kIntValue:
    case v1::Value::kBoolValue:
      return {};
    case v1::Value::kStringValue: {
      const std::string& s = value.string_value();
      if (s.size() > kMaxStringBytes) {
        return Fail(Reason::kInvalidValue, "string is longer than " + std::to_string(kMaxStringBytes) + " bytes");
      }
      if (s.find('\0') != std::string::npos) return Fail(Reason::kInvalidValue, "string must not contain NUL (\\u0000)");
      if (!utf8::is_valid(s.begin(), s.end())) return Fail(Reason::kInvalidValue, "string is not valid UTF-8");
      return {};
    }
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return Fail(Reason::kInvalidValue, "value is not set");
}

Verdict CheckReading(std::string_view key, std::int64_t ts, const v1::Value& value) {
  if (auto v = CheckKey(key); !v.ok()) return v;
  if (auto v = CheckTimestamp(ts); !v.ok()) return v;
  return CheckValue(value);
}

Verdict ValueFromJson(const nlohmann::json& j, v1::Value* out) {
  using json = nlohmann::json;
  switch (j.type()) {
    case json::value_t::boolean:
      out->set_bool_value(j.get<bool>());
      return {};
    case json::value_t::number_integer:
      out->set_int_value(j.get<std::int64_t>());
      return {};
    case json::value_t::number_unsigned: {
      const auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return Fail(Reason::kInvalidValue, "integer " + std::to_string(u) + " is above 9223372036854775807");
      }
      out->set_int_value(static_cast<std::int64_t>(u));
      return {};
    }
    case json::value_t::number_float:
      out->set_double_value(j.get<double>());
      break;
    case json::value_t::string:
      out->set_string_value(j.get_ref<const std::string&>());
      break;
    case json::value_t::null:
      return Fail(Reason::kWrongType, "null is not a telemetry value");
    case json::value_t::array:
    case json::value_t::object:
      return Fail(Reason::kWrongType, "lists and objects are not telemetry values");
    default:
      return Fail(Reason::kWrongType, std::string(j.type_name()) + " is not a telemetry value");
  }
  return CheckValue(*out);
}

Verdict TimestampFromJson(const nlohmann::json& j, std::int64_t* out) {
  std::int64_t ts = 0;
  if (j.is_number_integer() && !j.is_number_unsigned()) {
    ts = j.get<std::int64_t>();
  } else if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(kMaxTs)) {
      return Fail(Reason::kInvalidTimestamp, "ts " + std::to_string(u) + " is outside " + TsRange());
    }
    ts = static_cast<std::int64_t>(u);
  } else if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, ts);
    if (s.empty() || ec != std::errc() || ptr != end) {
      return Fail(Reason::kInvalidTimestamp, "ts must be an integer number of milliseconds");
    }
  } else {
    return Fail(Reason::kInvalidTimestamp, "ts must be an integer number of milliseconds");
  }
  if (auto v = CheckTimestamp(ts); !v.ok()) return v;
  *out = ts;
  return {};
}

}  // namespace strata::telemetry
