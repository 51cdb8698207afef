#include "agent/commands.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <strata/ids.h>
#include <strata/sqlite/migrations.h>
#include <strata/status_macros.h>
#include <strata/telemetry/json.h>
#include <strata/topics.h>

namespace strata::edge {
namespace {

constexpr int kSent = v1::COMMAND_STATE_SENT;
constexpr int kDelivered = v1::COMMAND_STATE_DELIVERED;
constexpr int kSucceeded = v1::COMMAND_STATE_SUCCEEDED;
constexpr int kFailed = v1::COMMAND_STATE_FAILED;
constexpr int kTimedOut = v1::COMMAND_STATE_TIMED_OUT;
constexpr int kExpired = v1::COMMAND_STATE_EXPIRED;
constexpr int kCancelled = v1::COMMAND_STATE_CANCELLED;
constexpr int kFirstFinal = kSucceeded;

constexpr std::size_t kMaxParamsBytes = 64 * 1024;
constexpr std::size_t kMaxResultBytes = 64 * 1024;
constexpr int kDeliveriesPerPass = 1000;

constexpr std::string_view kCreate = R"sql(
-- The commands this edge holds (state: the CommandState number; 4 and above have ended).
CREATE TABLE commands (
  command_id   TEXT PRIMARY KEY,
  device_id    TEXT NOT NULL,
  name         TEXT NOT NULL,
  params_json  TEXT NOT NULL,
  timeout_ms   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  state        INTEGER NOT NULL,
  received_at  INTEGER NOT NULL,
  delivered_at INTEGER NOT NULL DEFAULT 0,
  updated_at   INTEGER NOT NULL,
  result_json  TEXT NOT NULL DEFAULT '',
  error        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX commands_by_state ON commands (state, received_at);
-- Transitions not yet recorded by the cloud, in the order they happened.
CREATE TABLE reports (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  command_id  TEXT NOT NULL,
  state       INTEGER NOT NULL,
  at          INTEGER NOT NULL,
  result_json TEXT NOT NULL DEFAULT '',
  error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX reports_by_command ON reports (command_id, state);
)sql";
constexpr Migration kMigrations[] = {{1, "commands", kCreate}};

constexpr std::string_view kInsert =
    "INSERT OR IGNORE INTO commands (command_id, device_id, name, params_json, timeout_ms, expires_at, state,"
    " received_at, updated_at, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)";
constexpr std::string_view kCountOpen = "SELECT COUNT(*) FROM commands WHERE state < 4";
constexpr std::string_view kAddReport =
    "INSERT INTO reports (command_id, state, at, result_json, error) VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr std::string_view kTransition =
    "UPDATE commands SET state = ?2, updated_at = ?3, result_json = ?4, error = ?5,"
    " delivered_at = CASE WHEN ?2 = 3 THEN ?3 ELSE delivered_at END"
    " WHERE command_id = ?1 AND state BETWEEN ?6 AND ?7";
constexpr std::string_view kSelectOne =
    "SELECT device_id, state, updated_at, result_json, error FROM commands WHERE command_id = ?1";
constexpr std::string_view kDeleteReport = "DELETE FROM reports WHERE command_id = ?1 AND state = ?2";
constexpr std::string_view kReportsAfter =
    "SELECT seq, command_id, state, at, result_json, error FROM reports WHERE seq > ?1 ORDER BY seq LIMIT ?2";
constexpr std::string_view kLastReport = "SELECT COALESCE(MAX(seq), 0) FROM reports";
// ?1 now, ?2 the old state, ?3 the new one, ?4 why; the deadline is expires_at for SENT and
// delivered_at + timeout_ms for DELIVERED.
constexpr std::string_view kDeadlineReports =
    "INSERT INTO reports (command_id, state, at, error) SELECT command_id, ?3, ?1, ?4 FROM commands"
    " WHERE state = ?2 AND (CASE WHEN ?2 = 2 THEN expires_at ELSE delivered_at + timeout_ms END) <= ?1";
constexpr std::string_view kDeadlineCommands =
    "UPDATE commands SET state = ?3, updated_at = ?1, error = ?4"
    " WHERE state = ?2 AND (CASE WHEN ?2 = 2 THEN expires_at ELSE delivered_at + timeout_ms END) <= ?1";
constexpr std::string_view kNextDeadline =
    "SELECT MIN(CASE WHEN state = 2 THEN expires_at ELSE delivered_at + timeout_ms END) FROM commands"
    " WHERE state IN (2, 3)";
constexpr std::string_view kForget =
    "DELETE FROM commands WHERE state >= 4 AND updated_at < ?1"
    " AND command_id NOT IN (SELECT command_id FROM reports)";
// Every SENT command, oldest first: the pass skips those of absent devices, so that a device
// that is away with a thousand commands holds back nobody else's.
constexpr std::string_view kToDeliver =
    "SELECT command_id, device_id, name, params_json, expires_at FROM commands WHERE state = 2"
    " ORDER BY received_at";
constexpr std::string_view kStillDeliverable =
    "SELECT 1 FROM commands WHERE command_id = ?1 AND state = 2 AND expires_at > ?2";
constexpr std::string_view kByState = "SELECT state, COUNT(*) FROM commands GROUP BY state";
constexpr std::string_view kCountReports = "SELECT COUNT(*) FROM reports";

using sqlite::Exec;
using sqlite::QueryInt;

absl::Status CheckCommand(const v1::CommandRequest& c) {
  if (auto s = ValidateId("device_id", c.device_id()); !s.ok()) return s;
  if (c.name().empty()) return absl::InvalidArgumentError("name is empty");
  if (c.params_json().size() > kMaxParamsBytes) return absl::InvalidArgumentError("params is larger than 64 KiB");
  auto params = nlohmann::json::parse(c.params_json(), nullptr, false);
  if (params.is_discarded() || !params.is_object()) return absl::InvalidArgumentError("params is not a JSON object");
  if (c.timeout_ms() <= 0) return absl::InvalidArgumentError("timeout_ms is not positive");
  return absl::OkStatus();
}

struct Held {
  std::string device_id;
  int state = 0;
  std::int64_t updated_at = 0;
  std::string result_json, error;
};

// The command as this edge holds it; nullopt when it holds none by that id.
absl::StatusOr<std::optional<Held>> ReadHeld(sqlite::Connection& db, const std::string& command_id) {
  STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(kSelectOne));
  STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, command_id).Step());
  if (!found) return std::optional<Held>();
  return std::optional<Held>(Held{s.Text(0), static_cast<int>(s.Int(1)), s.Int(2), s.Text(3), s.Text(4)});
}

}  // namespace

absl::StatusOr<std::unique_ptr<CommandOutbox>> CommandOutbox::Open(CommandOutboxOptions options,
                                                                   MetricsRegistry& metrics, Clock clock) {
  // synchronous=FULL: a transition is reported (and forgotten by the cloud's retries) only
  // once it is on disk.
  auto db = sqlite::Connection::Open({.path = options.path, .synchronous = sqlite::Synchronous::kFull});
  if (!db.ok()) return db.status();
  STRATA_RETURN_IF_ERROR(sqlite::Migrate(**db, kMigrations, clock(), "edge commands"));
  auto last = QueryInt(**db, kLastReport);
  if (!last.ok()) return last.status();
  std::unique_ptr<CommandOutbox> outbox(new CommandOutbox(*std::move(db), std::move(options), metrics, std::move(clock)));
  outbox->last_report_seq_ = *last;
  return outbox;
}

CommandOutbox::CommandOutbox(std::unique_ptr<sqlite::Connection> db, CommandOutboxOptions options,
                             MetricsRegistry& metrics, Clock clock)
    : db_(std::move(db)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      publish_failures_(metrics.GetCounter("strata_edge_command_publish_failures_total",
                                           "Command publishes the broker did not acknowledge (retried)")),
      open_sent_(metrics.GetGauge("strata_edge_commands_open", "Commands held that have not ended, by state",
                                  {{"state", "sent"}})),
      open_delivered_(metrics.GetGauge("strata_edge_commands_open", "Commands held that have not ended, by state",
                                       {{"state", "delivered"}})),
      reports_pending_(metrics.GetGauge("strata_edge_command_reports_pending",
                                        "Command transitions the cloud has not acknowledged yet")) {
  for (int state = kSent; state <= kCancelled; ++state) {
    std::string name = v1::CommandState_Name(static_cast<v1::CommandState>(state));
    name = name.substr(std::string_view("COMMAND_STATE_").size());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    transitions_[state] = &metrics.GetCounter("strata_edge_command_transitions_total",
                                              "Command transitions on this edge, by the state entered",
                                              {{"state", name}});
  }
  for (const char* reason : {"malformed", "unknown", "wrong_device", "late", "ended", "too_large", "invalid_command",
                             "outbox_full"}) {
    rejected_[reason] = &metrics.GetCounter("strata_edge_command_messages_rejected_total",
                                            "Command replies (and commands) this edge refused, by reason",
                                            {{"reason", reason}});
  }
}

CommandOutbox::~CommandOutbox() { Stop(); }

void CommandOutbox::Start(CommandPublisher publish) {
  publish_ = std::move(publish);
  thread_ = std::thread([this] { Loop(); });
}

void CommandOutbox::Stop() {
  {
    std::lock_guard lock(wake_mu_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CommandOutbox::SetReportListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mu_);
  listener_ = std::move(listener);
}

void CommandOutbox::Reported() {
  {
    // Read after the commit, so that the uplink never skips past a report that is not there.
    std::lock_guard lock(mu_);
    if (auto last = QueryInt(*db_, kLastReport); last.ok()) last_report_seq_ = *last;
  }
  std::lock_guard lock(listener_mu_);
  if (listener_) listener_();
}

void CommandOutbox::Reject(const char* reason, const std::string& detail) {
  rejected_.at(reason)->Inc();
  bool first;
  {
    std::lock_guard lock(told_mu_);
    first = told_.insert(reason).second;
  }
  if (first) {
    spdlog::warn("commands: refused ({}): {} (further ones are counted in "
                 "strata_edge_command_messages_rejected_total, logged at debug)", reason, detail);
  } else {
    spdlog::debug("commands: refused ({}): {}", reason, detail);
  }
}

absl::Status CommandOutbox::AddReport(const std::string& command_id, int state, std::int64_t at,
                                      const std::string& result_json, const std::string& error) {
  STRATA_RETURN_IF_ERROR(Exec(*db_, kAddReport, command_id, state, at, result_json, error));
  transitions_.at(state)->Inc();
  return absl::OkStatus();
}

absl::StatusOr<bool> CommandOutbox::TransitionInTx(const std::string& command_id, int from_min, int from_max, int to,
                                                   std::int64_t at, const std::string& result_json,
                                                   const std::string& error) {
  STRATA_RETURN_IF_ERROR(Exec(*db_, kTransition, command_id, to, at, result_json, error, from_min, from_max));
  if (db_->Changes() == 0) return false;
  STRATA_RETURN_IF_ERROR(AddReport(command_id, to, at, result_json, error));
  return true;
}

absl::StatusOr<bool> CommandOutbox::Transition(const std::string& command_id, int from_min, int from_max, int to,
                                               std::int64_t at, const std::string& result_json,
                                               const std::string& error) {
  STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
  STRATA_ASSIGN_OR_RETURN(bool moved, TransitionInTx(command_id, from_min, from_max, to, at, result_json, error));
  if (!moved) return false;
  STRATA_RETURN_IF_ERROR(tx.Commit());
  return true;
}

absl::Status CommandOutbox::Take(const v1::CommandRequest& c) {
  if (auto s = ValidateId("command_id", c.command_id()); !s.ok()) {
    // No id to report it under: dropped.
    Reject("invalid_command", s.ToString());
    return absl::OkStatus();
  }
  const std::int64_t now = clock_();
  const absl::Status valid = CheckCommand(c);
  bool taken = false;
  {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(std::int64_t open, QueryInt(*db_, kCountOpen));
    if (valid.ok() && static_cast<std::size_t>(open) >= options_.max_open) {
      // Not taken and not reported: the cloud keeps it QUEUED and sends it on a later stream.
      Reject("outbox_full", "command " + c.command_id() + ": " + std::to_string(open) +
                                " commands are open on this edge (the most it holds); it stays queued in the cloud");
      return absl::OkStatus();
    }
    // A command the edge cannot run ends FAILED here, with the reason.
    const int state = valid.ok() ? kSent : kFailed;
    const std::string error = valid.ok() ? "" : "the edge refused the command: " + std::string(valid.message());
    STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
    STRATA_RETURN_IF_ERROR(Exec(*db_, kInsert, c.command_id(), c.device_id(), c.name(), c.params_json(),
                                c.timeout_ms(), c.expires_at(), state, now, error));
    if (db_->Changes() == 1) {
      STRATA_RETURN_IF_ERROR(AddReport(c.command_id(), state, now, "", error));
      taken = true;
    }
    STRATA_RETURN_IF_ERROR(tx.Commit());
  }
  if (!valid.ok()) Reject("invalid_command", "command " + c.command_id() + ": " + std::string(valid.message()));
  if (taken) {
    Reported();
    std::lock_guard lock(wake_mu_);
    waiting_.insert(c.device_id());
    wake_ = true;
    wake_cv_.notify_all();
  }
  return absl::OkStatus();
}

absl::Status CommandOutbox::Cancel(const std::string& command_id) {
  if (!ValidateId("command_id", command_id).ok()) return absl::OkStatus();
  const std::int64_t now = clock_();
  {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(auto held, ReadHeld(*db_, command_id));
    if (!held) {
      // Never reached this edge (or long forgotten): it will not run here.
      STRATA_RETURN_IF_ERROR(AddReport(command_id, kCancelled, now, "", "cancelled before it reached the edge"));
    } else if (held->state < kFirstFinal) {
      STRATA_ASSIGN_OR_RETURN(bool moved, Transition(command_id, kSent, kDelivered, kCancelled, now, "",
                                                     "cancelled by the cloud"));
      (void)moved;
    } else {
      // Ended before the cancel came: say how, again, so that the cloud knows it was answered.
      STRATA_RETURN_IF_ERROR(AddReport(command_id, held->state, held->updated_at, held->result_json, held->error));
    }
  }
  Reported();
  return absl::OkStatus();
}

void CommandOutbox::Acked(const v1::CommandUpdateAck& ack) {
  std::lock_guard lock(mu_);
  if (auto s = Exec(*db_, kDeleteReport, ack.command_id(), static_cast<int>(ack.state())); !s.ok()) {
    // Kept: sent again on the next stream, and recorded once by the cloud.
    spdlog::error("commands: cannot forget an acknowledged report: {}", s.ToString());
  }
}

absl::StatusOr<std::vector<std::pair<std::int64_t, v1::CommandUpdate>>> CommandOutbox::ReportsAfter(
    std::int64_t after, std::size_t max) {
  std::vector<std::pair<std::int64_t, v1::CommandUpdate>> out;
  std::lock_guard lock(mu_);
  auto s = db_->Prepare(kReportsAfter);
  if (!s.ok()) return s.status();
  s->Bind(1, after).Bind(2, static_cast<std::int64_t>(max));
  auto done = s->ForEachRow([&] {
    v1::CommandUpdate u;
    u.set_command_id(s->Text(1));
    u.set_state(static_cast<v1::CommandState>(s->Int(2)));
    u.set_at(s->Int(3));
    u.set_result_json(s->Text(4));
    u.set_error(s->Text(5));
    out.emplace_back(s->Int(0), std::move(u));
  });
  if (!done.ok()) return done;
  return out;
}

void CommandOutbox::DevicesSeen(const std::vector<std::string>& device_ids) {
  const std::int64_t now = clock_();
  bool wake = false;
  std::lock_guard lock(wake_mu_);
  for (const auto& id : device_ids) {
    auto [it, added] = last_seen_.try_emplace(id, now);
    const bool was_present = !added && now - it->second < options_.presence_window.count();
    it->second = now;
    if (!was_present && waiting_.count(id)) wake = true;
  }
  if (wake) {
    wake_ = true;
    wake_cv_.notify_all();
  }
}

bool CommandOutbox::Present(const std::string& device_id, std::int64_t now) {
  if (options_.presence_window.count() == 0) return true;
  std::lock_guard lock(wake_mu_);
  auto it = last_seen_.find(device_id);
  return it != last_seen_.end() && now - it->second < options_.presence_window.count();
}

void CommandOutbox::OnResponse(const std::string& device_id, const std::string& command_id,
                               std::string_view payload) {
  const std::string where = "reply of device '" + device_id.substr(0, 128) + "' to command '" +
                            command_id.substr(0, 128) + "'";
  if (payload.size() > kMaxResultBytes + 1024) {
    Reject("too_large", where + ": the reply is larger than 65 KiB");
    return;
  }
  // Bounded: a hostile reply nested a million deep must not exhaust the stack.
  auto parsed = telemetry::ParseBoundedJson(payload);
  nlohmann::json j = parsed.ok() ? *std::move(parsed) : nlohmann::json();
  if (!parsed.ok() || !j.is_object() || !j.contains("status") || !j["status"].is_string() ||
      (j["status"] != "SUCCEEDED" && j["status"] != "FAILED")) {
    Reject("malformed", where + ": not a JSON object with \"status\": \"SUCCEEDED\" or \"FAILED\"");
    return;
  }
  const int to = j["status"] == "SUCCEEDED" ? kSucceeded : kFailed;
  std::string result = j.contains("result") ? j["result"].dump() : "";
  if (result.size() > kMaxResultBytes) {
    Reject("too_large", where + ": its result is larger than 64 KiB");
    return;
  }
  if (!ValidateId("command_id", command_id).ok()) {
    Reject("unknown", where + ": not a command id");
    return;
  }
  const std::int64_t now = clock_();
  const char* refused = nullptr;
  {
    std::lock_guard lock(mu_);
    auto held = ReadHeld(*db_, command_id);
    if (!held.ok()) {
      spdlog::error("commands: {}: {}", where, held.status().ToString());
      return;
    }
    if (!*held) {
      refused = "unknown";
    } else if ((*held)->device_id != device_id) {
      refused = "wrong_device";
    } else if (const int state = (*held)->state; state == kTimedOut) {
      refused = "late";
    } else if (state >= kFirstFinal) {
      refused = "ended";
    } else {
      // A reply before the DELIVERED commit (the PUBACK and the reply raced): it was
      // delivered. Both transitions in one transaction: never DELIVERED without the reply.
      auto record = [&]() -> absl::Status {
        STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
        if (state == kSent) {
          STRATA_RETURN_IF_ERROR(TransitionInTx(command_id, kSent, kSent, kDelivered, now, "", "").status());
        }
        STRATA_RETURN_IF_ERROR(TransitionInTx(command_id, kDelivered, kDelivered, to, now, result,
                                              to == kFailed ? "the device answered FAILED" : "")
                                   .status());
        return tx.Commit();
      };
      if (auto s = record(); !s.ok()) spdlog::error("commands: {}: {}", where, s.ToString());
    }
  }
  if (refused != nullptr) {
    Reject(refused, where + (std::string_view(refused) == "late" ? ": it came after the timeout (TIMED_OUT)"
                             : std::string_view(refused) == "ended" ? ": the command has ended"
                             : std::string_view(refused) == "wrong_device" ? ": the command is for another device"
                                                                            : ": no such command on this edge"));
    return;
  }
  Reported();
}

CommandOutbox::Stats CommandOutbox::GetStats() {
  Stats out;
  std::lock_guard lock(mu_);
  if (auto s = db_->Prepare(kByState); s.ok()) {
    (void)s->ForEachRow([&] { out.by_state[static_cast<int>(s->Int(0))] = s->Int(1); });
  }
  if (auto n = QueryInt(*db_, kCountReports); n.ok()) out.reports_pending = *n;
  return out;
}

void CommandOutbox::RunOnce() {
  const std::int64_t now = clock_();
  struct Delivery {
    std::string id, device, payload;
  };
  std::vector<Delivery> deliveries;
  bool reported = false;
  {
    std::lock_guard lock(mu_);
    auto pass = [&]() -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      for (auto [from, to, why] : {std::tuple{kSent, kExpired, "not delivered before expires_at"},
                                   std::tuple{kDelivered, kTimedOut, "no reply within timeout_ms"}}) {
        STRATA_RETURN_IF_ERROR(Exec(*db_, kDeadlineReports, now, from, to, std::string_view(why)));
        if (const auto n = db_->Changes(); n > 0) {
          transitions_.at(to)->Inc(static_cast<std::uint64_t>(n));
          reported = true;
          STRATA_RETURN_IF_ERROR(Exec(*db_, kDeadlineCommands, now, from, to, std::string_view(why)));
        }
      }
      STRATA_RETURN_IF_ERROR(Exec(*db_, kForget, now - options_.keep_ended.count()));
      STRATA_RETURN_IF_ERROR(tx.Commit());
      STRATA_ASSIGN_OR_RETURN(auto s, db_->Prepare(kToDeliver));
      std::set<std::string> waiting;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&] {
        Delivery d{s.Text(0), s.Text(1), {}};
        waiting.insert(d.device);
        if (deliveries.size() >= static_cast<std::size_t>(kDeliveriesPerPass) || !Present(d.device, now)) return;
        auto params = nlohmann::json::parse(s.Text(3), nullptr, false);
        if (params.is_discarded()) params = nlohmann::json::object();
        d.payload = nlohmann::json{{"command_id", d.id}, {"name", s.Text(2)}, {"params", params},
                                   {"expires_at", s.Int(4)}}
                        .dump();
        deliveries.push_back(std::move(d));
      }));
      {
        std::lock_guard wake(wake_mu_);
        waiting_ = std::move(waiting);
        // Devices not heard from within the window count as absent whether or not they are
        // remembered: forgotten, so that the map holds only the devices present now.
        if (options_.presence_window.count() > 0) {
          const std::int64_t window = options_.presence_window.count();
          std::erase_if(last_seen_, [&](const auto& seen) { return now - seen.second >= window; });
        }
      }
      // The gauges, once a pass (at most a second old): /metrics never waits for a commit.
      STRATA_ASSIGN_OR_RETURN(auto by_state, db_->Prepare(kByState));
      std::int64_t sent = 0, delivered = 0;
      STRATA_RETURN_IF_ERROR(by_state.ForEachRow([&] {
        if (by_state.Int(0) == kSent) sent = by_state.Int(1);
        if (by_state.Int(0) == kDelivered) delivered = by_state.Int(1);
      }));
      open_sent_.Set(static_cast<double>(sent));
      open_delivered_.Set(static_cast<double>(delivered));
      STRATA_ASSIGN_OR_RETURN(std::int64_t pending, QueryInt(*db_, kCountReports));
      reports_pending_.Set(static_cast<double>(pending));
      return absl::OkStatus();
    };
    if (auto s = pass(); !s.ok()) spdlog::error("commands: delivery pass failed: {}", s.ToString());
  }
  if (reported) Reported();
  if (deliveries.empty() || !publish_) return;
  // Every present device's commands at once (one round trip to the broker for the lot), then
  // one DELIVERED commit for those the broker acknowledged. A cancel or an expiry that came
  // while the pass read them is honoured: each is looked at again just before the publish.
  // (One that comes during the publish itself finds it on its way to the device: the command
  // ends CANCELLED and the device's reply is refused, as for a cancel after DELIVERED.)
  std::vector<const Delivery*> sending;
  std::vector<std::pair<std::string, std::string>> messages;
  {
    std::lock_guard lock(mu_);
    auto still = db_->Prepare(kStillDeliverable);
    if (!still.ok()) return;
    const std::int64_t at = clock_();
    for (const auto& d : deliveries) {
      still->Reset();
      auto row = still->Bind(1, d.id).Bind(2, at).Step();
      if (!row.ok() || !*row) continue;
      sending.push_back(&d);
      messages.emplace_back(topics::CommandTopic(options_.topic_prefix, d.device, d.id), d.payload);
    }
  }
  if (messages.empty()) return;
  const std::vector<absl::Status> published = publish_(messages);
  const std::int64_t at = clock_();
  bool delivered = false;
  {
    std::lock_guard lock(mu_);
    auto commit = [&]() -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(*db_));
      for (std::size_t i = 0; i < sending.size(); ++i) {
        if (!published[i].ok()) {
          publish_failures_.Inc();
          spdlog::debug("commands: cannot publish {} yet: {}", messages[i].first, published[i].ToString());
          continue;  // the next pass tries again
        }
        STRATA_RETURN_IF_ERROR(Exec(*db_, kTransition, sending[i]->id, kDelivered, at, std::string(), std::string(),
                                    kSent, kSent));
        if (db_->Changes() == 0) continue;  // its reply came first
        STRATA_RETURN_IF_ERROR(AddReport(sending[i]->id, kDelivered, at, "", ""));
        delivered = true;
      }
      return tx.Commit();
    };
    if (auto s = commit(); !s.ok()) {
      delivered = false;
      spdlog::error("commands: {} command(s) delivered, but not recorded (they are published again): {}",
                    sending.size(), s.ToString());
    }
  }
  if (delivered) Reported();
}

void CommandOutbox::Loop() {
  std::unique_lock lock(wake_mu_);
  while (!stopping_) {
    wake_ = false;
    lock.unlock();
    RunOnce();
    std::int64_t wait_ms = 1000;
    {
      std::lock_guard db(mu_);
      if (auto next = QueryInt(*db_, kNextDeadline); next.ok() && *next > 0) {
        wait_ms = std::clamp<std::int64_t>(*next - clock_() + 1, 10, 1000);
      }
    }
    lock.lock();
    wake_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_ || wake_; });
  }
}

}  // namespace strata::edge
