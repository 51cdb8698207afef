#include "codec.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <map>

#include <absl/strings/str_cat.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <strata/telemetry/model.h>
#include <utf8cpp/utf8.h>

namespace strata::storage {
namespace {

// Invalid UTF-8 is replaced rather than thrown on: the database columns are text/jsonb and
// could not hold it anyway.
std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string EncodeStringMap(const StringMap& map) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : map) j[k] = v;
  return Dump(j);
}

absl::Status DecodeEdgeSettings(std::string_view json, v1::EdgeSettings* out) {
  // Fields of a newer release (a replica ahead of this one in a rolling upgrade) are skipped;
  // a value that does not parse at all reads as no settings, logged, rather than ending the
  // edge's stream or hiding it from the API.
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), out, options).ok()) {
    spdlog::warn("storage: stored edge settings do not parse, read as none: {}", json.substr(0, 200));
    out->Clear();
  }
  return absl::OkStatus();
}

absl::Status DecodeStringMap(std::string_view json, StringMap* out) {
  out->clear();
  if (json.empty()) return absl::OkStatus();
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InternalError(absl::StrCat("stored map is not a JSON object: ", std::string(json)));
  for (const auto& [k, v] : j.items()) {
    (*out)[k] = v.is_string() ? v.get<std::string>() : Dump(v);
  }
  return absl::OkStatus();
}

std::optional<std::string> LabelFilterJson(const std::vector<std::pair<std::string, std::string>>& labels) {
  std::map<std::string, std::string> seen;
  for (const auto& [k, v] : labels) {
    auto [it, inserted] = seen.emplace(k, v);
    if (!inserted && it->second != v) return std::nullopt;
  }
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : seen) j[k] = v;
  return Dump(j);
}

std::string EncodeJsonArray(const std::vector<std::string>& items) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : items) j.push_back(s);
  return Dump(j);
}

std::string EncodePgTextArray(const std::vector<std::string>& items) {
  // Array literal syntax: every element double-quoted, with '"' and '\' backslash-escaped.
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  // A double always fits in 64 characters; anything else is a library bug.
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

absl::Status ValidatePoints(const std::vector<Point>& points) {
  for (const auto& p : points) {
    if (auto v = telemetry::CheckReading(p.key, p.ts, p.value); !v.ok()) return v.ToStatus("key " + p.key);
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const v1::TelemetryBatch& batch) {
  constexpr auto kMaxSeq = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (batch.last_seq() > kMaxSeq) return absl::InvalidArgumentError("last_seq above 2^63-1");
  for (const auto& r : batch.readings()) {
    if (r.device_id().empty()) return absl::InvalidArgumentError("reading without device_id");
    if (auto v = telemetry::CheckReading(r.key(), r.ts(), r.value()); !v.ok()) {
      return v.ToStatus("seq " + std::to_string(r.seq()));
    }
  }
  return absl::OkStatus();
}

absl::Status NotFound(std::string_view kind, std::string_view id) {
  return absl::NotFoundError(std::string(kind) + " '" + std::string(id) + "' not found");
}

absl::Status ConflictError(std::string_view backend, std::string_view detail) {
  spdlog::debug("{}: {}", backend, detail);
  return absl::AlreadyExistsError("already exists");
}

absl::Status UnavailableDbError(std::string_view backend, std::string_view detail) {
  spdlog::warn("{}: {}", backend, detail);
  return absl::UnavailableError("the database is unavailable; retry later");
}

absl::Status InternalDbError(std::string_view backend, std::string_view detail) {
  spdlog::error("{}: {}", backend, detail);
  return absl::InternalError("internal database error; see the server's log");
}

absl::Status SupersededError(std::string_view edge_id, std::uint64_t session_epoch, std::uint64_t current_epoch) {
  return absl::AbortedError("a newer session of edge '" + std::string(edge_id) + "' started (epoch " +
                            std::to_string(current_epoch) + ", this session's " + std::to_string(session_epoch) +
                            "); this one may no longer write");
}

std::vector<v1::AggregateSeries> SeriesInKeyOrder(const std::vector<std::string>& keys,
                                                  const std::map<std::string, std::vector<v1::Bucket>>& by_key) {
  std::vector<v1::AggregateSeries> out;
  for (const auto& key : keys) {
    auto& series = out.emplace_back();
    series.set_key(key);
    if (auto it = by_key.find(key); it != by_key.end()) {
      for (const auto& b : it->second) *series.add_buckets() = b;
    }
  }
  return out;
}

ValueText ToValueText(const v1::Value& v) {
  struct Text {
    std::string operator()(double x) const { return FormatDouble(x); }
    std::string operator()(std::int64_t x) const { return absl::StrCat(x); }
    std::string operator()(bool x) const { return x ? "t" : "f"; }
    std::string operator()(std::string_view x) const { return std::string(x); }
  };
  return VisitValue(v, [](ValueKind kind, auto x) { return ValueText{kind, Text{}(x)}; });
}

absl::Status CheckId(std::string_view field, std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat("empty ", std::string(field)));
  return absl::OkStatus();
}

absl::Status CheckEdgeBatches(std::string_view edge_id, std::span<const v1::TelemetryBatch* const> batches) {
  if (auto s = CheckId("edge_id", edge_id); !s.ok()) return s;
  for (const auto* batch : batches) {
    if (auto s = ValidateBatch(*batch); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckConfigAck(const v1::ConfigAck& ack) {
  if (ack.revision() == 0) return absl::InvalidArgumentError("config_ack.revision must be at least 1");
  if (ack.revision() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return absl::InvalidArgumentError("config_ack.revision is above 2^63-1");
  }
  if (ack.error().size() > kMaxConfigErrorBytes) {
    return absl::InvalidArgumentError("config_ack.error is longer than " + std::to_string(kMaxConfigErrorBytes) +
                                      " bytes");
  }
  if (ack.error().find('\0') != std::string::npos || !utf8::is_valid(ack.error().begin(), ack.error().end())) {
    return absl::InvalidArgumentError("config_ack.error is not valid UTF-8 text");
  }
  return absl::OkStatus();
}

std::string ConfigRefusal(const v1::ConfigAck& ack) {
  return "revision " + std::to_string(ack.revision()) + ": " + ack.error();
}

absl::Status CheckAggregateQuery(const AggregateQuery& q) {
  if (q.keys.empty()) return absl::InvalidArgumentError("aggregate needs at least one key");
  if (q.interval <= 0) return absl::InvalidArgumentError("aggregate interval must be positive");
  if (q.end <= q.start) return absl::InvalidArgumentError("aggregate end must be after start");
  return absl::OkStatus();
}

}  // namespace strata::storage
