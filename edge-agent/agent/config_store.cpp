#include "agent/config_store.h"

#include "agent/edge_rules.h"

#include <unistd.h>

#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include <spdlog/spdlog.h>
#include <utf8cpp/utf8.h>
#include <strata/edge_settings.h>
#include <strata/ids.h>
#include <strata/sqlite/migrations.h>
#include <strata/status_macros.h>

#include "agent/twins.h"

namespace strata::edge {
namespace {

constexpr std::string_view kCreateConfig = R"sql(
-- A revision received and validated, not yet switched to (at most one row).
CREATE TABLE config_staged (
  revision  INTEGER PRIMARY KEY,
  document  BLOB NOT NULL,     -- a serialized strata.v1.EdgeConfig
  staged_at INTEGER NOT NULL
);
-- The revision the agent runs (at most one row).
CREATE TABLE config_applied (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  revision   INTEGER NOT NULL,
  document   BLOB NOT NULL,
  applied_at INTEGER NOT NULL
);
)sql";
constexpr Migration kMigrations[] = {{1, "config", kCreateConfig}};

constexpr std::string_view kSelectApplied = "SELECT revision, document, applied_at FROM config_applied WHERE id = 1";
constexpr std::string_view kClearStage = "DELETE FROM config_staged";
constexpr std::string_view kStage = "INSERT INTO config_staged (revision, document, staged_at) VALUES (?1, ?2, ?3)";
constexpr std::string_view kSwitch =
    "INSERT OR REPLACE INTO config_applied (id, revision, document, applied_at)"
    " SELECT 1, revision, document, ?2 FROM config_staged WHERE revision = ?1";

constexpr std::size_t kMaxTypeBytes = 256;

std::set<std::string> DeviceIds(const v1::EdgeConfig& config) {
  std::set<std::string> ids;
  for (const auto& d : config.devices()) ids.insert(d.device_id());
  return ids;
}

// `text` as valid UTF-8 of at most `max` bytes, cut at a character boundary.
std::string ShortText(std::string_view text, std::size_t max) {
  std::string valid = utf8::replace_invalid(std::string(text));
  if (valid.size() <= max) return valid;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(valid[end]) & 0xC0) == 0x80) --end;  // a continuation byte
  valid.resize(end);
  return valid;
}

}  // namespace

absl::Status ValidateEdgeConfig(const v1::EdgeConfig& config) {
  if (config.revision() == 0) return absl::InvalidArgumentError("revision must be at least 1");
  if (config.revision() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return absl::InvalidArgumentError("revision is above 2^63-1");
  }
  if (auto s = ValidateEdgeSettings(config.settings()); !s.ok()) return s;
  if (auto s = ValidateEdgeRules(config); !s.ok()) return s;
  std::set<std::string_view> seen;
  for (int i = 0; i < config.devices_size(); ++i) {
    const auto& d = config.devices(i);
    const std::string field = "devices[" + std::to_string(i) + "].device_id";
    if (auto s = ValidateId(field, d.device_id()); !s.ok()) return s;
    if (!seen.insert(d.device_id()).second) {
      return absl::InvalidArgumentError(field + " '" + d.device_id() + "' appears twice");
    }
    if (d.type().size() > kMaxTypeBytes) {
      return absl::InvalidArgumentError("devices[" + std::to_string(i) + "].type is longer than " +
                                        std::to_string(kMaxTypeBytes) + " bytes");
    }
    if (auto s = ValidateDesired(d); !s.ok()) {
      return absl::InvalidArgumentError("devices[" + std::to_string(i) + "]." + std::string(s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Open(ConfigStoreOptions options, DeviceDirectory& directory,
                                                               MetricsRegistry& metrics, Clock clock) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.path).parent_path(), ec);
  auto db = sqlite::Connection::Open({.path = options.path, .synchronous = sqlite::Synchronous::kFull});
  if (!db.ok()) return absl::UnavailableError("cannot open the config store: " + std::string(db.status().message()));
  STRATA_RETURN_IF_ERROR(sqlite::Migrate(**db, kMigrations, clock(), "edge config"));
  std::unique_ptr<ConfigStore> store(
      new ConfigStore(*std::move(db), std::move(options), directory, metrics, std::move(clock)));
  STRATA_RETURN_IF_ERROR(store->Load());
  return store;
}

ConfigStore::ConfigStore(std::unique_ptr<sqlite::Connection> db, ConfigStoreOptions options,
                         DeviceDirectory& directory, MetricsRegistry& metrics, Clock clock)
    : db_(std::move(db)),
      options_(std::move(options)),
      directory_(directory),
      clock_(std::move(clock)),
      applied_total_(metrics.GetCounter("strata_edge_config_revisions_total", "Config revisions from the cloud",
                                        {{"result", "applied"}})),
      rejected_total_(metrics.GetCounter("strata_edge_config_revisions_total", "Config revisions from the cloud",
                                         {{"result", "rejected"}})) {
  metrics.AddCallbackGauge("strata_edge_config_revision", "The config revision the agent runs (0: none yet)",
                           [this] { return static_cast<double>(Applied().revision); });
}

absl::Status ConfigStore::Load() {
  std::lock_guard apply_lock(apply_mu_);
  std::lock_guard lock(mu_);
  // A stage left behind was never switched to, nor acknowledged: the cloud sends it again.
  STRATA_RETURN_IF_ERROR(db_->Exec(kClearStage));
  STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kSelectApplied));
  STRATA_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    spdlog::info("config {}: no revision applied yet", options_.path);
    return absl::OkStatus();
  }
  v1::EdgeConfig config;
  if (!config.ParseFromString(s.Blob(1))) {
    return absl::DataLossError("config " + options_.path + ": the applied revision does not parse");
  }
  const std::int64_t applied_at = s.Int(2);
  applied_ = {config.revision(), applied_at, static_cast<std::size_t>(config.devices_size())};
  running_ = config;
  directory_.Replace(DeviceIds(config));
  if (options_.on_applied) options_.on_applied(config);
  spdlog::info("config {}: running revision {} ({} devices), applied at {}", options_.path, config.revision(),
               config.devices_size(), applied_at);
  return absl::OkStatus();
}

AppliedConfig ConfigStore::Applied() const {
  std::lock_guard lock(mu_);
  return applied_;
}

absl::StatusOr<std::int64_t> ConfigStore::StageAndSwitch(const v1::EdgeConfig& config) {
  const auto revision = static_cast<std::int64_t>(config.revision());
  const std::int64_t now = clock_();
  {
    STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
    STRATA_RETURN_IF_ERROR(db_->Exec(kClearStage));
    STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kStage));
    STRATA_RETURN_IF_ERROR(s.Bind(1, revision).BindBlob(2, config.SerializeAsString()).Bind(3, now).Run());
    STRATA_RETURN_IF_ERROR(tx.Commit());
  }
  if (options_.crash_after_step == "staged") {
    spdlog::critical("fault injection: exiting after staging config revision {}", revision);
    spdlog::default_logger()->flush();
    _exit(86);
  }
  STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
  STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kSwitch));
  STRATA_RETURN_IF_ERROR(s.Bind(1, revision).Bind(2, now).Run());
  if (db_->Changes() != 1) return absl::InternalError("the staged revision vanished before the switch");
  STRATA_RETURN_IF_ERROR(db_->Exec(kClearStage));
  STRATA_RETURN_IF_ERROR(tx.Commit());
  if (options_.crash_after_step == "switched") {
    spdlog::critical("fault injection: exiting after switching to config revision {}, before its ack", revision);
    spdlog::default_logger()->flush();
    _exit(86);
  }
  return now;
}

absl::StatusOr<v1::ConfigAck> ConfigStore::Apply(const v1::EdgeConfig& received, bool carries_desired,
                                                 bool carries_settings, bool carries_rules) {
  std::lock_guard apply_lock(apply_mu_);
  // What an older cloud does not send is kept from the running revision, not cleared.
  v1::EdgeConfig completed;
  const bool whole = carries_desired && carries_settings && carries_rules;
  if (!whole) {
    completed = received;
    if (!carries_settings) *completed.mutable_settings() = running_.settings();
    if (!carries_rules) *completed.mutable_rules() = running_.rules();
    if (!carries_desired) {
      std::map<std::string, const v1::EdgeDevice*> had;
      for (const auto& d : running_.devices()) had[d.device_id()] = &d;
      for (auto& d : *completed.mutable_devices()) {
        if (auto it = had.find(d.device_id()); it != had.end()) {
          d.set_desired_json(it->second->desired_json());
          d.set_desired_version(it->second->desired_version());
        }
      }
    }
  }
  const v1::EdgeConfig& config = whole ? received : completed;
  v1::ConfigAck ack;
  ack.set_revision(config.revision());
  const AppliedConfig running = Applied();
  if (config.revision() != 0 && config.revision() == running.revision) {
    ack.set_applied(true);  // applied before; the cloud did not get our ack
    return ack;
  }
  if (auto s = ValidateEdgeConfig(config); !s.ok()) {
    rejected_total_.Inc();
    spdlog::warn("config: revision {} refused, keeping revision {}: {}", config.revision(), running.revision,
                 std::string(s.message()));
    ack.set_applied(false);
    ack.set_error(ShortText(std::string(s.message()), 900));
    return ack;
  }
  if (config.revision() < running.revision) {
    spdlog::warn("config: the cloud sent revision {}, below the running {} (was its database restored?); applying it",
                 config.revision(), running.revision);
  }
  auto applied_at = StageAndSwitch(config);
  if (!applied_at.ok()) {
    spdlog::error("config: cannot store revision {}: {}", config.revision(), applied_at.status().ToString());
    return applied_at.status();
  }
  {
    std::lock_guard lock(mu_);
    applied_ = {config.revision(), *applied_at, static_cast<std::size_t>(config.devices_size())};
  }
  running_ = config;
  directory_.Replace(DeviceIds(config));
  if (options_.on_applied) options_.on_applied(config);
  applied_total_.Inc();
  spdlog::info("config: applied revision {} ({} devices)", config.revision(), config.devices_size());
  ack.set_applied(true);
  return ack;
}

}  // namespace strata::edge
