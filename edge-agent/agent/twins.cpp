#include "agent/twins.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <strata/ids.h>
#include <strata/sqlite/migrations.h>
#include <strata/status_macros.h>
#include <strata/telemetry/json.h>
#include <strata/topics.h>

namespace strata::edge {
namespace {

constexpr std::string_view kCreate = R"sql(
-- Each device's reported document (every report merged into it), the seq of its last change,
-- and the highest seq of it the cloud acknowledged.
CREATE TABLE reported (
  device_id  TEXT PRIMARY KEY,
  document   TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  acked_seq  INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE INDEX reported_by_seq ON reported (seq);
)sql";
// The devices whose desired document this edge has published retained: those that leave the
// revision have it cleared, also after a restart.
constexpr std::string_view kCreatePublished = R"sql(
CREATE TABLE desired_published (
  device_id TEXT PRIMARY KEY
);
)sql";
constexpr Migration kMigrations[] = {{1, "twins", kCreate}, {2, "desired published", kCreatePublished}};

constexpr std::string_view kLastSeq = "SELECT COALESCE(MAX(seq), 0) FROM reported";
constexpr std::string_view kCountRows = "SELECT COUNT(*) FROM reported";
constexpr std::string_view kSelectDocument = "SELECT document, seq > acked_seq FROM reported WHERE device_id = ?1";
constexpr std::string_view kAcked = "SELECT device_id FROM reported WHERE seq <= acked_seq";
constexpr std::string_view kForget = "DELETE FROM reported WHERE device_id = ?1 AND seq <= acked_seq";
constexpr std::string_view kSelectPublished = "SELECT device_id FROM desired_published";
constexpr std::string_view kAddPublished = "INSERT OR IGNORE INTO desired_published (device_id) VALUES (?1)";
constexpr std::string_view kRemovePublished = "DELETE FROM desired_published WHERE device_id = ?1";
constexpr std::string_view kUpsert =
    "INSERT INTO reported (device_id, document, seq, updated_at) VALUES (?1, ?2, ?3, ?4)"
    " ON CONFLICT (device_id) DO UPDATE SET document = excluded.document, seq = excluded.seq,"
    " updated_at = excluded.updated_at";
constexpr std::string_view kPending =
    "SELECT device_id, document, seq, updated_at FROM reported WHERE seq > acked_seq AND seq > ?1"
    " ORDER BY seq LIMIT ?2";
constexpr std::string_view kAck =
    "UPDATE reported SET acked_seq = ?2 WHERE device_id = ?1 AND acked_seq < ?2 AND seq >= ?2";
constexpr std::string_view kCountPending = "SELECT COUNT(*) FROM reported WHERE seq > acked_seq";

using sqlite::QueryInt;

}  // namespace

absl::Status ValidateDesired(const v1::EdgeDevice& d) {
  if (d.desired_version() < 0) return absl::InvalidArgumentError("desired_version is negative");
  if (d.desired_json().empty() && d.desired_version() == 0) return absl::OkStatus();  // a cloud of version 3
  if (d.desired_json().size() > kMaxTwinDocumentBytes) {
    return absl::InvalidArgumentError("desired_json is larger than " + std::to_string(kMaxTwinDocumentBytes) +
                                      " bytes");
  }
  auto doc = telemetry::ParseBoundedJson(d.desired_json());
  if (!doc.ok() || !doc->is_object()) return absl::InvalidArgumentError("desired_json is not a JSON object");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Twins>> Twins::Open(TwinsOptions options, MetricsRegistry& metrics, Clock clock) {
  // The agent's --buffer-sync: with full, a report is on disk (power loss included) before
  // the device's next one is merged into it.
  auto db = sqlite::Connection::Open({.path = options.path, .synchronous = options.synchronous});
  if (!db.ok()) return db.status();
  STRATA_RETURN_IF_ERROR(sqlite::Migrate(**db, kMigrations, clock(), "edge twins"));
  STRATA_ASSIGN_OR_RETURN(std::int64_t last, QueryInt(**db, kLastSeq));
  STRATA_ASSIGN_OR_RETURN(std::int64_t rows, QueryInt(**db, kCountRows));
  STRATA_ASSIGN_OR_RETURN(std::int64_t pending, QueryInt(**db, kCountPending));
  std::set<std::string> published;
  {
    STRATA_ASSIGN_OR_RETURN(auto s, (*db)->Prepare(kSelectPublished));
    STRATA_RETURN_IF_ERROR(s.ForEachRow([&] { published.insert(s.Text(0)); }));
  }
  std::unique_ptr<Twins> twins(new Twins(*std::move(db), std::move(options), metrics, std::move(clock)));
  twins->last_seq_ = last;
  twins->rows_ = rows;
  twins->pending_ = pending;
  twins->reported_pending_.Set(static_cast<double>(pending));
  twins->published_ = std::move(published);
  return twins;
}

Twins::Twins(std::unique_ptr<sqlite::Connection> db, TwinsOptions options, MetricsRegistry& metrics, Clock clock)
    : db_(std::move(db)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      store_failures_(metrics.GetCounter("strata_edge_twin_store_failures_total",
                                         "Reports from devices that could not be stored (lost; logged)")),
      desired_published_(metrics.GetCounter("strata_edge_twin_desired_published_total",
                                            "Desired documents published to devices (retained)")),
      publish_failures_(metrics.GetCounter("strata_edge_twin_desired_publish_failures_total",
                                           "Desired documents the broker did not acknowledge (retried)")),
      reported_pending_(metrics.GetGauge("strata_edge_twin_reported_pending",
                                         "Devices whose reported document the cloud has not acknowledged yet")) {
  for (const char* outcome :
       {"accepted", "malformed", "too_large", "invalid_device", "unknown_device", "too_many_devices", "retained"}) {
    reported_[outcome] = &metrics.GetCounter("strata_edge_twin_reported_total",
                                             "Reported-property messages from devices, by outcome",
                                             {{"outcome", outcome}});
  }
}

Twins::~Twins() { Stop(); }

void Twins::Start(RetainedPublisher publish) {
  publish_ = std::move(publish);
  thread_ = std::thread([this] { Loop(); });
}

void Twins::Stop() {
  {
    std::lock_guard lock(desired_mu_);
    stopping_ = true;
  }
  desired_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Twins::SetDesired(const v1::EdgeConfig& config) {
  std::map<std::string, std::pair<std::int64_t, std::string>> next;
  for (const auto& d : config.devices()) {
    if (d.desired_version() <= 0) continue;
    auto doc = nlohmann::json::parse(d.desired_json(), nullptr, false);  // validated with the revision
    if (!doc.is_object()) continue;
    next[d.device_id()] = {d.desired_version(),
                           nlohmann::json{{"version", d.desired_version()}, {"desired", std::move(doc)}}.dump()};
  }
  std::set<std::string> in_revision;
  for (const auto& d : config.devices()) in_revision.insert(d.device_id());
  {
    std::lock_guard lock(desired_mu_);
    for (const auto& [id, doc] : next) {
      auto it = desired_.find(id);
      if (it == desired_.end() || it->second != doc) to_publish_.insert(id);
    }
    // Left the revision (or lost its document): its retained document is cleared. published_
    // is on disk, so this holds across restarts too.
    for (const auto& id : published_) {
      if (!next.count(id)) to_publish_.insert(id);
    }
    desired_ = std::move(next);
  }
  desired_cv_.notify_all();
  // The reported documents of devices that left, once the cloud has them.
  std::lock_guard lock(mu_);
  auto forget = [&]() -> absl::Status {
    std::vector<std::string> gone;
    STRATA_ASSIGN_OR_RETURN(auto acked, db_->Prepare(kAcked));
    STRATA_RETURN_IF_ERROR(acked.ForEachRow([&] {
      if (!in_revision.count(acked.Text(0))) gone.push_back(acked.Text(0));
    }));
    if (gone.empty()) return absl::OkStatus();
    STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
    STRATA_ASSIGN_OR_RETURN(auto del, db_->Prepare(kForget));
    for (const auto& id : gone) {
      del.Reset();
      STRATA_RETURN_IF_ERROR(del.Bind(1, id).Run());
    }
    STRATA_RETURN_IF_ERROR(tx.Commit());
    STRATA_ASSIGN_OR_RETURN(rows_, QueryInt(*db_, kCountRows));
    return absl::OkStatus();
  };
  if (auto s = forget(); !s.ok()) spdlog::warn("twins: cannot forget devices that left the revision: {}", s.ToString());
}

void Twins::BrokerConnected() {
  {
    std::lock_guard lock(desired_mu_);
    for (const auto& [id, doc] : desired_) to_publish_.insert(id);
  }
  desired_cv_.notify_all();
}

void Twins::Loop() {
  std::unique_lock lock(desired_mu_);
  while (!stopping_) {
    if (to_publish_.empty()) {
      desired_cv_.wait(lock, [this] { return stopping_ || !to_publish_.empty(); });
      continue;
    }
    std::vector<std::string> ids;
    std::vector<std::pair<std::string, std::string>> messages;
    for (const auto& id : to_publish_) {
      if (ids.size() >= 1000) break;
      auto it = desired_.find(id);
      ids.push_back(id);
      messages.emplace_back(topics::DeviceTopic(options_.topic_prefix, id, "desired"),
                            it == desired_.end() ? std::string() : it->second.second);
    }
    lock.unlock();
    const std::vector<absl::Status> results = publish_ ? publish_(messages) : std::vector<absl::Status>();
    lock.lock();
    std::vector<std::pair<std::string, bool>> record;  // (device, cleared) to write to twins.db
    bool failed = results.size() != messages.size();
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (!results[i].ok()) {
        failed = true;
        publish_failures_.Inc();
        continue;
      }
      desired_published_.Inc();
      // Published as it was read: another change since then is still to go.
      auto it = desired_.find(ids[i]);
      const std::string& now = it == desired_.end() ? std::string() : it->second.second;
      if (now == messages[i].second) to_publish_.erase(ids[i]);
      const bool cleared = messages[i].second.empty();
      if (cleared ? published_.erase(ids[i]) == 0 : !published_.insert(ids[i]).second) continue;
      // Remembered on disk (before the next clear can be needed): the connection is the
      // reports' too, taken after desired_mu_ is let go.
      record.emplace_back(ids[i], cleared);
    }
    if (!record.empty()) {
      lock.unlock();
      {
        std::lock_guard db(mu_);
        for (const auto& [id, cleared] : record) {
          auto s = db_->Prepare(cleared ? kRemovePublished : kAddPublished);
          absl::Status done = s.ok() ? s->Bind(1, id).Run() : s.status();
          if (!done.ok()) spdlog::warn("twins: cannot record the publication for {}: {}", id, done.ToString());
        }
      }
      lock.lock();
    }
    // Not connected, or the broker did not answer: again in a second, or at the next connection.
    if (failed) desired_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
  }
}

void Twins::Reject(const char* reason, const std::string& detail) {
  reported_.at(reason)->Inc();
  bool first;
  {
    std::lock_guard lock(told_mu_);
    first = told_.insert(reason).second;
  }
  if (first) {
    spdlog::warn("twins: refused a report ({}): {} (further ones are counted in strata_edge_twin_reported_total, "
                 "logged at debug)", reason, detail);
  } else {
    spdlog::debug("twins: refused a report ({}): {}", reason, detail);
  }
}

void Twins::OnReported(const std::string& device_id, std::string_view payload, bool retained) {
  const std::string where = "report of device '" + device_id.substr(0, 128) + "'";
  if (auto s = ValidateId("device_id", device_id); !s.ok()) {
    Reject("invalid_device", where + ": " + std::string(s.message()));
    return;
  }
  if (retained) {
    Reject("retained", where + ": published retained and replayed from the broker's store (it may be stale); "
                               "publish reports without the retain flag");
    return;
  }
  if (options_.accept_device && !options_.accept_device(device_id)) {
    Reject("unknown_device", where + ": the device is not in the registry and auto-registration is off");
    return;
  }
  if (payload.size() > kMaxReportedMessageBytes) {
    Reject("too_large", where + ": " + std::to_string(payload.size()) + " bytes, more than " +
                            std::to_string(kMaxReportedMessageBytes));
    return;
  }
  auto patch = telemetry::ParseBoundedJson(payload);
  if (!patch.ok() || !patch->is_object()) {
    Reject("malformed", where + ": not a JSON object");
    return;
  }
  bool stored = false;
  {
    std::lock_guard lock(mu_);
    auto merge = [&]() -> absl::StatusOr<bool> {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      STRATA_ASSIGN_OR_RETURN(auto read, db_->Prepare(kSelectDocument));
      STRATA_ASSIGN_OR_RETURN(bool found, read.Bind(1, device_id).Step());
      if (!found && rows_ >= static_cast<std::int64_t>(options_.max_devices)) {
        Reject("too_many_devices", where + ": " + std::to_string(rows_) + " devices have a reported document here, "
                                            "the most this edge keeps");
        return false;
      }
      const bool was_pending = found && read.Int(1) != 0;
      nlohmann::json doc = found ? nlohmann::json::parse(read.Text(0), nullptr, false) : nlohmann::json::object();
      if (!doc.is_object()) doc = nlohmann::json::object();
      const std::string before = doc.dump();
      doc.merge_patch(*patch);
      const std::string text = doc.dump();
      if (text.size() > kMaxTwinDocumentBytes) {
        Reject("too_large", where + ": the reported document would be " + std::to_string(text.size()) +
                                " bytes, more than " + std::to_string(kMaxTwinDocumentBytes));
        return false;
      }
      if (found && text == before) return true;  // nothing changed: nothing to send
      const std::int64_t now = clock_();
      const std::int64_t seq = std::max(last_seq_.load() + 1, now * 1000);
      STRATA_ASSIGN_OR_RETURN(auto write, db_->Prepare(kUpsert));
      STRATA_RETURN_IF_ERROR(write.Bind(1, device_id).Bind(2, text).Bind(3, seq).Bind(4, now).Run());
      STRATA_RETURN_IF_ERROR(tx.Commit());
      last_seq_ = seq;
      if (!found) ++rows_;
      if (!was_pending) ++pending_;
      reported_pending_.Set(static_cast<double>(pending_));
      stored = true;
      return true;
    };
    auto merged = merge();
    if (!merged.ok()) {
      // Lost (the broker has been told it was received): counted, and said each time.
      store_failures_.Inc();
      spdlog::error("twins: cannot store the {}; it is lost: {}", where, merged.status().ToString());
      return;
    }
    if (!*merged) return;
  }
  reported_.at("accepted")->Inc();
  if (!stored) return;
  std::lock_guard lock(listener_mu_);
  if (listener_) listener_();
}

absl::StatusOr<std::vector<std::pair<std::int64_t, v1::TwinReported>>> Twins::ReportsAfter(std::int64_t after,
                                                                                           std::size_t max) {
  std::vector<std::pair<std::int64_t, v1::TwinReported>> out;
  std::lock_guard lock(mu_);
  auto s = db_->Prepare(kPending);
  if (!s.ok()) return s.status();
  s->Bind(1, after).Bind(2, static_cast<std::int64_t>(max));
  auto done = s->ForEachRow([&] {
    auto& [seq, r] = out.emplace_back();
    seq = s->Int(2);
    r.set_device_id(s->Text(0));
    r.set_reported_json(s->Text(1));
    r.set_seq(static_cast<std::uint64_t>(s->Int(2)));
    r.set_at(s->Int(3));
  });
  if (!done.ok()) return done;
  return out;
}

void Twins::SetReportListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mu_);
  listener_ = std::move(listener);
}

void Twins::Acked(const v1::TwinReportedAck& ack) {
  std::lock_guard lock(mu_);
  auto s = db_->Prepare(kAck);
  if (!s.ok()) return;
  auto done = s->Bind(1, ack.device_id()).Bind(2, static_cast<std::int64_t>(ack.seq())).Run();
  if (!done.ok()) {
    spdlog::error("twins: cannot record an acknowledgement: {}", done.ToString());
    return;
  }
  // Acked up to the seq it has now: no longer pending.
  if (db_->Changes() == 1) {
    auto row = db_->Prepare(kSelectDocument);
    if (row.ok()) {
      auto found = row->Bind(1, ack.device_id()).Step();
      if (found.ok() && *found && row->Int(1) == 0 && pending_ > 0) --pending_;
    }
  }
  reported_pending_.Set(static_cast<double>(pending_));
}

}  // namespace strata::edge
