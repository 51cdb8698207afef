// The twin store, written once for both backends on storage/sql_tx.h (portable SQL, as in
// commands.cpp). A twin is columns of the device's row (migrations/*/000[78]_device_twins.sql);
// raising desired_version fires the trigger that raises the edge's config revision, so the
// new document reaches the edge in the same transaction's revision.
#include <string>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "storage/codec.h"
#include "storage/sql.h"
#include "storage/sql_tx.h"
#include "storage/store.h"

namespace strata::storage {
namespace {

constexpr std::string_view kSelectTwin =
    "SELECT desired, desired_version, desired_updated_at, reported, reported_version, reported_updated_at"
    " FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
// Only when nobody changed it since it was read (?4): the caller reads again otherwise.
constexpr std::string_view kUpdateDesired =
    "UPDATE devices SET desired = ?3, desired_version = desired_version + 1, desired_updated_at = ?5"
    " WHERE tenant_id = ?1 AND device_id = ?2 AND desired_version = ?4";
// From the device's own edge, and newer than what that edge sent before (a device that moved
// edges starts again with the new edge's seqs).
constexpr std::string_view kApplyReported =
    "UPDATE devices SET reported = ?4, reported_version = reported_version + 1, reported_updated_at = ?5,"
    " reported_edge = ?3, reported_seq = ?6"
    " WHERE tenant_id = ?1 AND device_id = ?2 AND edge_id = ?3 AND (reported_edge <> ?3 OR reported_seq < ?6)";
constexpr std::string_view kIsEdgeDevice =
    "SELECT 1 FROM devices WHERE tenant_id = ?1 AND device_id = ?2 AND edge_id = ?3";
// A report of a device the cloud does not know yet registers it for the edge, and one of a
// device no edge serves makes it the edge's, as the edge's telemetry does (a new device's
// first report may well come before its first reading is stored).
using sql::kAutoCreateDevice;
constexpr std::string_view kClaimDevice =
    "UPDATE devices SET edge_id = ?3 WHERE tenant_id = ?1 AND device_id = ?2 AND edge_id = ''";
// The edge's documents of all the devices of the edge of ?2 but ?2, in bytes.
constexpr std::string_view kEdgeDesiredBytes =
    "SELECT COALESCE(SUM(LENGTH(o.desired)), 0), MAX(d.edge_id) FROM devices d"
    " JOIN devices o ON o.tenant_id = d.tenant_id AND o.edge_id = d.edge_id AND o.device_id <> d.device_id"
    " WHERE d.tenant_id = ?1 AND d.device_id = ?2 AND d.edge_id <> ''";
// A report stamped further ahead of the cloud's clock than this is stamped with the cloud's.
constexpr std::int64_t kMaxReportSkewMs = 5 * 60 * 1000;

// What of `desired` `reported` does not match: per key, recursing where both hold objects.
nlohmann::json Difference(const nlohmann::json& desired, const nlohmann::json& reported) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, want] : desired.items()) {
    auto have = reported.find(key);
    if (have == reported.end()) {
      out[key] = want;
    } else if (want.is_object() && have->is_object()) {
      nlohmann::json inner = Difference(want, *have);
      if (!inner.empty()) out[key] = std::move(inner);
    } else if (want != *have) {
      out[key] = want;
    }
  }
  return out;
}

absl::Status ToStruct(const nlohmann::json& j, google::protobuf::Struct* out) {
  if (!google::protobuf::util::JsonStringToMessage(j.dump(), out).ok()) {
    return absl::InternalError("a twin document does not convert to a Struct");
  }
  return absl::OkStatus();
}

struct TwinRow {
  nlohmann::json desired, reported;
  std::int64_t desired_version = 0, desired_updated_at = 0, reported_version = 0, reported_updated_at = 0;
};

absl::StatusOr<v1::DeviceTwin> ToTwin(std::string_view device_id, const TwinRow& row) {
  v1::DeviceTwin t;
  t.set_device_id(std::string(device_id));
  if (auto s = ToStruct(row.desired, t.mutable_desired()); !s.ok()) return s;
  t.set_desired_version(row.desired_version);
  t.set_desired_updated_at(row.desired_updated_at);
  if (auto s = ToStruct(row.reported, t.mutable_reported()); !s.ok()) return s;
  t.set_reported_version(row.reported_version);
  t.set_reported_updated_at(row.reported_updated_at);
  if (auto s = ToStruct(Difference(row.desired, row.reported), t.mutable_difference()); !s.ok()) return s;
  return t;
}

// The twin's row; NOT_FOUND for an unknown device. The stored documents were checked when
// written; one that does not parse (edited by hand) reads as empty.
absl::Status ReadTwin(SqlTx& tx, const std::string& tenant, const std::string& device_id, TwinRow& out) {
  bool found = false;
  auto s = tx.Query(kSelectTwin, {tenant, device_id}, [&](const SqlRow& r) {
    found = true;
    out.desired = nlohmann::json::parse(r.Text(0), nullptr, false);
    if (!out.desired.is_object()) out.desired = nlohmann::json::object();
    out.desired_version = r.Int(1);
    out.desired_updated_at = r.Int(2);
    out.reported = nlohmann::json::parse(r.Text(3), nullptr, false);
    if (!out.reported.is_object()) out.reported = nlohmann::json::object();
    out.reported_version = r.Int(4);
    out.reported_updated_at = r.Int(5);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  if (!found) return NotFound("device", device_id);
  return absl::OkStatus();
}

class Twins final : public TwinStore {
 public:
  explicit Twins(SqlRunner& db) : db_(db) {}

  absl::StatusOr<v1::DeviceTwin> GetTwin(std::string_view tenant, std::string_view device_id) override {
    TwinRow row;
    auto s = db_.InTransaction(
        [&](SqlTx& tx) { return ReadTwin(tx, std::string(tenant), std::string(device_id), row); });
    if (!s.ok()) return s;
    return ToTwin(device_id, row);
  }

  absl::StatusOr<v1::DeviceTwin> UpdateDesired(std::string_view tenant, std::string_view device_id,
                                               const nlohmann::json& merge_patch,
                                               std::optional<std::int64_t> expected_version) override {
    const std::string t(tenant), id(device_id);
    TwinRow row;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      // Read, merge, and write only if nobody wrote in between; else read again (PostgreSQL
      // under READ COMMITTED sees the other writer's commit in the next statement).
      for (int attempt = 0;; ++attempt) {
        row = {};
        if (auto s = ReadTwin(tx, t, id, row); !s.ok()) return s;
        if (expected_version && *expected_version != row.desired_version) {
          return absl::AbortedError("device '" + id + "': desired_version is " + std::to_string(row.desired_version) +
                                    ", not the expected " + std::to_string(*expected_version));
        }
        nlohmann::json desired = row.desired;
        desired.merge_patch(merge_patch);
        const std::string text = desired.dump();
        if (text.size() > kMaxTwinDocumentBytes) {
          return absl::InvalidArgumentError("the desired document would be " + std::to_string(text.size()) +
                                            " bytes, above the limit of " + std::to_string(kMaxTwinDocumentBytes));
        }
        // The edge gets every document of its devices in each revision: their sum is bounded
        // so that a revision always fits (services::kMaxConfigBytes is 16 MiB).
        std::int64_t others = 0;
        std::string edge;
        auto sum = tx.Query(kEdgeDesiredBytes, {t, id}, [&](const SqlRow& r) {
          others = r.Int(0);
          if (!r.IsNull(1)) edge = r.Text(1);
          return absl::OkStatus();
        });
        if (!sum.ok()) return sum;
        if (others + static_cast<std::int64_t>(text.size()) > static_cast<std::int64_t>(kMaxEdgeDesiredBytes)) {
          return absl::FailedPreconditionError(
              "the desired documents of the devices of edge '" + edge + "' would total " +
              std::to_string(others + static_cast<std::int64_t>(text.size())) + " bytes, above the limit of " +
              std::to_string(kMaxEdgeDesiredBytes));
        }
        const std::int64_t now = db_.Now();
        auto changed = tx.Exec(kUpdateDesired, {t, id, text, row.desired_version, now});
        if (!changed.ok()) return changed.status();
        if (*changed == 1) {
          row.desired = std::move(desired);
          ++row.desired_version;
          row.desired_updated_at = now;
          return absl::OkStatus();
        }
        if (attempt >= 10) return absl::AbortedError("device '" + id + "': desired changed under every attempt");
      }
    });
    if (!s.ok()) return s;
    return ToTwin(device_id, row);
  }

  absl::StatusOr<ReportedOutcome> ApplyReported(std::string_view tenant, std::string_view edge_id,
                                                const v1::TwinReported& reported) override {
    const std::string t(tenant), e(edge_id);
    ReportedOutcome outcome = ReportedOutcome::kUnknown;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::int64_t now = db_.Now();
      const std::int64_t at = reported.at() > 0 && reported.at() <= now + kMaxReportSkewMs ? reported.at() : now;
      const SqlArgs apply = {t, reported.device_id(), e, reported.reported_json(), at,
                             static_cast<std::int64_t>(reported.seq())};
      auto changed = tx.Exec(kApplyReported, apply);
      if (!changed.ok()) return changed.status();
      if (*changed == 0) {
        if (auto n = tx.Exec(kAutoCreateDevice, {t, reported.device_id(), e, now}); !n.ok()) return n.status();
        if (auto n = tx.Exec(kClaimDevice, {t, reported.device_id(), e}); !n.ok()) return n.status();
        changed = tx.Exec(kApplyReported, apply);
        if (!changed.ok()) return changed.status();
      }
      if (*changed == 1) {
        outcome = ReportedOutcome::kStored;
        return absl::OkStatus();
      }
      outcome = ReportedOutcome::kUnknown;
      return tx.Query(kIsEdgeDevice, {t, reported.device_id(), e}, [&](const SqlRow&) {
        outcome = ReportedOutcome::kStale;
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    return outcome;
  }

 private:
  SqlRunner& db_;
};

}  // namespace

std::unique_ptr<TwinStore> NewTwinStore(SqlRunner& runner) { return std::make_unique<Twins>(runner); }

}  // namespace strata::storage
