#include "services/edge_session.h"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <span>

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <utf8cpp/utf8.h>

#include "services/grpc_status.h"
#include "strata/rules/proto.h"
#include "strata/ids.h"
#include "strata/telemetry/json.h"

namespace strata::services {

absl::Status ValidateBatchFrame(const v1::TelemetryBatch& batch) {
  if (batch.first_seq() == 0) return absl::InvalidArgumentError("batch.first_seq must be at least 1");
  if (batch.first_seq() > batch.last_seq()) return absl::InvalidArgumentError("batch.first_seq is after last_seq");
  if (batch.last_seq() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return absl::InvalidArgumentError("batch.last_seq is above 2^63-1");
  }
  if (batch.readings_size() > kMaxReadingsPerBatch) {
    return absl::InvalidArgumentError("batch holds more than " + std::to_string(kMaxReadingsPerBatch) + " readings");
  }
  std::uint64_t prev = 0;
  for (int i = 0; i < batch.readings_size(); ++i) {
    const auto seq = batch.readings(i).seq();
    if (seq < batch.first_seq() || seq > batch.last_seq() || seq <= prev) {
      return absl::InvalidArgumentError("batch.readings[" + std::to_string(i) +
                                        "].seq is outside [first_seq, last_seq] or not increasing");
    }
    prev = seq;
  }
  return absl::OkStatus();
}

telemetry::Verdict CheckEdgeReading(const v1::EdgeReading& reading) {
  if (auto s = ValidateId("device_id", reading.device_id()); !s.ok()) {
    return {telemetry::Reason::kInvalidKey, std::string(s.message())};
  }
  return telemetry::CheckReading(reading.key(), reading.ts(), reading.value());
}

EdgeSyncMetrics::EdgeSyncMetrics(MetricsRegistry& metrics)
    : connected_edges(metrics.GetGauge("strata_cloud_edges_connected", "Edges with an open EdgeSync stream")),
      open_streams(metrics.GetGauge("strata_cloud_edge_streams_open",
                                    "EdgeSync streams holding a slot (--max-edge-streams), before and after Hello")),
      batches_received(metrics.GetCounter("strata_cloud_edge_batches_received_total", "Telemetry batches received from edges")),
      batches_duplicate(metrics.GetCounter("strata_cloud_edge_batches_duplicate_total",
                                           "Batches at or below the edge's high-water mark, acked without writing")),
      batches_rejected(metrics.GetCounter("strata_cloud_edge_batches_rejected_total",
                                          "Batches whose frame was malformed (seqs out of order); the stream ends")),
      streams_refused(metrics.GetCounter("strata_cloud_edge_streams_refused_total",
                                         "EdgeSync streams refused: no valid Hello in time, or too many streams")),
      sessions_superseded(metrics.GetCounter("strata_cloud_edge_sessions_superseded_total",
                                             "EdgeSync sessions ended because a newer session of the edge started")),
      readings_stored(metrics.GetCounter("strata_cloud_edge_readings_stored_total", "Readings stored from edge batches")),
      transactions(metrics.GetCounter("strata_cloud_edge_transactions_total",
                                      "Transactions that stored edge batches (batches waiting together share one)")),
      configs_sent(metrics.GetCounter("strata_cloud_edge_configs_sent_total", "Config revisions sent to edges")),
      config_acks_applied(metrics.GetCounter("strata_cloud_edge_config_acks_total",
                                             "Edges' answers to config revisions", {{"result", "applied"}})),
      config_acks_refused(metrics.GetCounter("strata_cloud_edge_config_acks_total",
                                             "Edges' answers to config revisions", {{"result", "refused"}})),
      config_acks_invalid(metrics.GetCounter("strata_cloud_edge_config_acks_total",
                                             "Edges' answers to config revisions", {{"result", "invalid"}})),
      commands_sent(metrics.GetCounter("strata_cloud_edge_commands_sent_total", "Commands sent to edges")),
      cancels_sent(metrics.GetCounter("strata_cloud_edge_command_cancels_sent_total",
                                      "Cancellations of commands sent to edges")),
      updates_recorded(metrics.GetCounter("strata_cloud_edge_command_updates_total",
                                          "Command transitions reported by edges", {{"result", "recorded"}})),
      updates_duplicate(metrics.GetCounter("strata_cloud_edge_command_updates_total",
                                           "Command transitions reported by edges", {{"result", "duplicate"}})),
      updates_unknown(metrics.GetCounter("strata_cloud_edge_command_updates_total",
                                         "Command transitions reported by edges", {{"result", "unknown"}})),
      updates_invalid(metrics.GetCounter("strata_cloud_edge_command_updates_total",
                                         "Command transitions reported by edges", {{"result", "invalid"}})) {
  for (const char* outcome : {"stored", "stale", "unknown", "invalid"}) {
    twin_reports[outcome] = &metrics.GetCounter("strata_cloud_edge_twin_reports_total",
                                                "Reported twin documents from edges, by outcome", {{"outcome", outcome}});
  }
  for (const char* outcome : {"applied", "duplicate", "stale", "invalid"}) {
    edge_alarms[outcome] = &metrics.GetCounter("strata_cloud_edge_alarms_total",
                                               "Alarm transitions of edge rules, by outcome", {{"outcome", outcome}});
  }
  for (auto reason : telemetry::kAllReasons) {
    readings_refused[reason] = &metrics.GetCounter(
        "strata_cloud_edge_readings_refused_total", "Readings from edges refused by the telemetry model (not stored)",
        {{"reason", telemetry::ReasonLabel(reason)}});
  }
}

EdgeSession::EdgeSession(SessionIdentity id, storage::Database& db, Clock clock, EdgeSyncMetrics& metrics,
                         CommitHooks& fault)
    : id_(std::move(id)),
      db_(db),
      clock_(std::move(clock)),
      metrics_(metrics),
      fault_(fault),
      inbox_(QueueLimits{.max_items = kInboxCapacity, .max_bytes = kInboxMaxBytes},
             [](const Item& i) { return i.bytes; }) {}

EdgeSession::~EdgeSession() {
  for (const auto& [reason, n] : refused_) {
    if (n > 1) {
      spdlog::warn("edge {}: refused {} readings in this session ({})", id_.edge_id, n, telemetry::ReasonLabel(reason));
    }
  }
}

bool EdgeSession::Unexpected() {
  const char* expected = id_.protocol_version >= 6
                             ? "expected a batch, a heartbeat, a config_ack, a command_update, a twin_reported or an alarm"
                         : id_.protocol_version >= 4
                             ? "expected a batch, a heartbeat, a config_ack, a command_update or a twin_reported"
                         : id_.protocol_version >= 3 ? "expected a batch, a heartbeat, a config_ack or a command_update"
                         : id_.protocol_version >= 2 ? "expected a batch, a heartbeat or a config_ack"
                                                     : "expected a batch or a heartbeat";
  EndInput(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, expected));
  return false;
}

void EdgeSession::Poke() {
  if (poke_pending_.exchange(true)) return;  // one is on its way
  Item item;
  item.poke = true;
  if (!inbox_.TryPush(std::move(item))) poke_pending_ = false;
}

bool EdgeSession::Receive(v1::EdgeMessage message) {
  Item item;
  item.bytes = message.ByteSizeLong();
  switch (message.kind_case()) {
    case v1::EdgeMessage::kBatch: {
      metrics_.batches_received.Inc();
      auto* batch = message.mutable_batch();
      if (auto s = ValidateBatchFrame(*batch); !s.ok()) {
        metrics_.batches_rejected.Inc();
        spdlog::warn("edge {}: rejected batch {}..{}: {}", id_.edge_id, batch->first_seq(), batch->last_seq(),
                     s.ToString());
        EndInput(ToGrpc(s));
        return false;
      }
      item.refused = RefuseInvalid(*batch, item.refusal);
      break;
    }
    case v1::EdgeMessage::kHeartbeat:
      break;
    case v1::EdgeMessage::kConfigAck:
      if (id_.protocol_version >= 2) break;
      return Unexpected();
    case v1::EdgeMessage::kCommandUpdate:
      if (id_.protocol_version >= 3) break;
      return Unexpected();
    case v1::EdgeMessage::kTwinReported:
      if (id_.protocol_version >= 4) break;
      return Unexpected();
    case v1::EdgeMessage::kAlarm:
      if (id_.protocol_version >= 6) break;
      return Unexpected();
    default:
      return Unexpected();
  }
  item.message = std::move(message);
  return inbox_.Push(std::move(item));
}

void EdgeSession::EndOfInput() { EndInput(grpc::Status::OK); }

void EdgeSession::EndInput(grpc::Status why) {
  input_status_ = std::move(why);
  inbox_.Close();
}

void EdgeSession::StopServing() { inbox_.Close(); }

std::uint32_t EdgeSession::RefuseInvalid(v1::TelemetryBatch& batch, std::string& first) {
  auto* readings = batch.mutable_readings();
  int kept = 0;
  std::uint32_t refused = 0;
  for (int i = 0; i < readings->size(); ++i) {
    const auto& r = readings->Get(i);
    auto verdict = CheckEdgeReading(r);
    if (verdict.ok()) {
      if (kept != i) readings->SwapElements(kept, i);
      ++kept;
      continue;
    }
    ++refused;
    metrics_.readings_refused.at(verdict.reason)->Inc();
    // The refused reading's own fields may be what is wrong with it (invalid UTF-8, too
    // long): quoted shortened and made valid UTF-8, since the text goes into a proto string.
    std::string what = utf8::replace_invalid("seq " + std::to_string(r.seq()) + " (device '" +
                                             r.device_id().substr(0, 128) + "', key '" + r.key().substr(0, 256) +
                                             "'): " + verdict.message);
    // Logged once per reason and session, with this first one as the sample; the session's
    // end logs the totals.
    if (refused_[verdict.reason]++ == 0) spdlog::warn("edge {}: refused reading {}", id_.edge_id, what);
    if (first.empty()) first = std::move(what);
  }
  if (refused > 0) readings->DeleteSubrange(kept, readings->size() - kept);
  return refused;
}

grpc::Status EdgeSession::Serve(EdgeStream& stream) {
  // Takes the next message together with the batches right behind it (at most
  // kMaxBatchesPerTransaction batches, kMaxReadingsPerBatch readings), when it is a batch:
  // batches that are waiting when a transaction starts share it. Other kinds go alone.
  auto joins = [](const Item& next, std::span<const Item> taken) {
    if (next.message.has_command_update() && taken.back().message.has_command_update()) {
      return taken.size() < kMaxUpdatesPerTransaction;
    }
    if (next.message.has_alarm() && taken.back().message.has_alarm()) {
      return taken.size() < kMaxEdgeAlarmsPerTransaction;
    }
    if (!next.message.has_batch() || !taken.back().message.has_batch() || taken.size() >= kMaxBatchesPerTransaction) {
      return false;
    }
    std::size_t readings = static_cast<std::size_t>(next.message.batch().readings_size());
    for (const Item& t : taken) readings += static_cast<std::size_t>(t.message.batch().readings_size());
    return readings <= static_cast<std::size_t>(kMaxReadingsPerBatch);
  };
  const bool config = id_.protocol_version >= 2;
  const bool commands = id_.protocol_version >= 3;
  std::optional<std::chrono::milliseconds> wait;
  if (config) wait = kConfigPollInterval;
  auto next_poll = std::chrono::steady_clock::now();
  std::vector<Item> items;
  v1::CloudMessage out;
  for (;;) {
    if (config && std::chrono::steady_clock::now() >= next_poll) {
      if (auto s = SendConfigIfNew(stream); !s.ok()) return s;
      if (commands) {
        if (auto s = SendCommands(stream); !s.ok()) return s;
      }
      next_poll = std::chrono::steady_clock::now() + kConfigPollInterval;
    }
    items.clear();
    if (!inbox_.PopBatch(items, kMaxBatchesPerTransaction, wait, std::chrono::milliseconds(0), joins)) {
      return grpc::Status::OK;  // the input ended and everything was answered
    }
    if (items.empty()) continue;  // the poll interval passed
    if (items.front().poke) {
      poke_pending_ = false;
      if (commands) {
        if (auto s = SendCommands(stream); !s.ok()) return s;
      }
      continue;
    }
    switch (items.front().message.kind_case()) {
      case v1::EdgeMessage::kBatch:
        if (auto s = StoreBatches(items, stream); !s.ok()) return s;
        break;
      case v1::EdgeMessage::kHeartbeat:
        if (auto s = db_.Edges().RecordHeartbeat(id_.tenant, id_.edge_id, id_.epoch, clock_(),
                                                 items.front().message.heartbeat());
            !s.ok()) {
          if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
          spdlog::warn("edge {}: heartbeat not recorded: {}", id_.edge_id, s.ToString());
        }
        out.Clear();
        out.mutable_heartbeat()->set_sent_at(clock_());
        if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
        break;
      case v1::EdgeMessage::kConfigAck:
        if (auto s = TakeConfigAck(items.front().message.config_ack()); !s.ok()) return s;
        break;
      case v1::EdgeMessage::kCommandUpdate:
        if (auto s = TakeCommandUpdates(items, stream); !s.ok()) return s;
        break;
      case v1::EdgeMessage::kAlarm:
        if (auto s = TakeEdgeAlarms(items, stream); !s.ok()) return s;
        break;
      case v1::EdgeMessage::kTwinReported:
        if (auto s = TakeTwinReported(items.front().message.twin_reported(), stream); !s.ok()) return s;
        break;
      default:  // Receive() queues no other kind
        return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected message kind in the inbox");
    }
  }
}

grpc::Status EdgeSession::StoreBatches(const std::vector<Item>& items, EdgeStream& stream) {
  std::vector<const v1::TelemetryBatch*> batches;
  for (const auto& item : items) batches.push_back(&item.message.batch());
  auto results = db_.Telemetry().ApplyEdgeBatches(id_.tenant, id_.edge_id, batches, clock_(), id_.epoch);
  if (!results.ok()) {
    const auto& s = results.status();
    if (s.code() == absl::StatusCode::kAborted) return ToGrpc(s);  // fenced off by a newer session
    // Every reading passed the telemetry model, so this is the database, not the data: the
    // edge keeps the batches and sends them again. The detail stays in this log.
    spdlog::error("edge {}: batches {}..{} not stored: {}", id_.edge_id, batches.front()->first_seq(),
                  batches.back()->last_seq(), s.ToString());
    if (s.code() == absl::StatusCode::kUnavailable) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cloud cannot reach its database; the batches will be resent");
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "the cloud could not store batches " +
                                                         std::to_string(batches.front()->first_seq()) + ".." +
                                                         std::to_string(batches.back()->last_seq()) +
                                                         "; see the cloud's log");
  }
  metrics_.transactions.Inc();
  if (fault_.on_stored) {
    // What this commit wrote: a batch the cloud had before (a resend) goes no further.
    std::vector<const v1::TelemetryBatch*> fresh;
    for (std::size_t i = 0; i < batches.size() && i < results->size(); ++i) {
      if ((*results)[i].written > 0) fresh.push_back(batches[i]);
    }
    if (!fresh.empty()) fault_.on_stored(id_.tenant, fresh);
  }
  if (fault_.crash_after > 0 && ++fault_.commits >= fault_.crash_after) {
    spdlog::critical("fault injection: exiting after commit of batches {}..{}, before their acks",
                     batches.front()->first_seq(), batches.back()->last_seq());
    spdlog::default_logger()->flush();
    _exit(86);
  }
  // Counted for the whole group before any ack goes out: the group is committed even if the
  // edge goes away halfway through its acks.
  for (const auto& result : *results) {
    if (result.written == 0) metrics_.batches_duplicate.Inc();
    metrics_.readings_stored.Inc(result.written);
  }
  v1::CloudMessage out;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const auto& result = (*results)[i];
    out.Clear();
    auto* ack = out.mutable_ack();
    ack->set_last_seq(batches[i]->last_seq());
    ack->set_high_water_mark(result.high_water_mark);
    ack->set_written(result.written);
    ack->set_refused(items[i].refused);
    if (items[i].refused > 0) ack->set_refusal(items[i].refusal);
    if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  }
  return grpc::Status::OK;
}

grpc::Status EdgeSession::ReadFailed(const char* what, const absl::Status& s) {
  if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
  spdlog::error("edge {}: cannot read its {}: {}", id_.edge_id, what, s.ToString());
  return grpc::Status(grpc::StatusCode::INTERNAL, std::string("the cloud could not read this edge's ") + what);
}

grpc::Status EdgeSession::SendConfigIfNew(EdgeStream& stream) {
  auto read_failed = [&](const absl::Status& s) { return ReadFailed("configuration", s); };
  auto state = db_.Edges().GetConfigState(id_.tenant, id_.edge_id);
  if (!state.ok()) return read_failed(state.status());
  if (state->desired <= state->applied || state->desired <= sent_revision_) return grpc::Status::OK;
  auto config = db_.Edges().GetEdgeConfig(id_.tenant, id_.edge_id);
  if (!config.ok()) return read_failed(config.status());
  sent_revision_ = config->revision();
  // Read after the revision: the rules are as new as it, or newer (a later revision follows).
  if (id_.protocol_version >= 6) {
    if (auto s = AddEdgeRules(*config); !s.ok()) return read_failed(s);
  } else {
    // An older edge does not run EDGE rules: said with each revision sent, so that one who
    // wrote one for its devices knows why no alarm comes.
    v1::EdgeConfig probe;
    *probe.mutable_devices() = config->devices();
    if (AddEdgeRules(probe).ok() && probe.rules_size() > 0) {
      spdlog::warn("edge {}: speaks EdgeSync version {}, below 6: the {} EDGE rule(s) for its devices do not run "
                   "there (upgrade strata-edge)",
                   id_.edge_id, id_.protocol_version, probe.rules_size());
    }
  }
  if (const std::size_t bytes = config->ByteSizeLong(); bytes > kMaxConfigBytes) {
    // Not sent (the edge could not take it; the stream would break on it at every connect):
    // the edge keeps running its revision, and the operator sees why.
    const std::string why = "the configuration is " + std::to_string(bytes) + " bytes, above the " +
                            std::to_string(kMaxConfigBytes) + " bytes an edge takes; it was not sent";
    spdlog::error("edge {}: config revision {} not sent: {}", id_.edge_id, sent_revision_, why);
    v1::ConfigAck refused;
    refused.set_revision(sent_revision_);
    refused.set_error(why);
    if (auto s = db_.Edges().RecordConfigAck(id_.tenant, id_.edge_id, refused, clock_());
        s.code() == absl::StatusCode::kUnavailable) {
      return ToGrpc(s);
    }
    return grpc::Status::OK;
  }
  v1::CloudMessage out;
  *out.mutable_config() = *std::move(config);
  if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  metrics_.configs_sent.Inc();
  spdlog::info("edge {}: sent config revision {} ({} devices, {} rules)", id_.edge_id, sent_revision_,
               out.config().devices_size(), out.config().rules_size());
  return grpc::Status::OK;
}

grpc::Status EdgeSession::TakeConfigAck(const v1::ConfigAck& ack) {
  // The edge answers each revision once; another answer to one already recorded (a confused
  // or hostile edge) costs nothing here.
  if (ack.revision() != 0 && ack.revision() <= acked_revision_) return grpc::Status::OK;
  absl::Status s;
  if (ack.revision() == 0 || ack.revision() > sent_revision_) {
    s = absl::InvalidArgumentError("config_ack for revision " + std::to_string(ack.revision()) +
                                   ", which this session did not send (last sent: " +
                                   std::to_string(sent_revision_) + ")");
  } else {
    s = db_.Edges().RecordConfigAck(id_.tenant, id_.edge_id, ack, clock_());
  }
  if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
  if (!s.ok()) {
    // The edge's mistake (or an ack the stores cannot take): counted, logged once per session,
    // and nothing else is affected; the revision is sent again on the next connection.
    metrics_.config_acks_invalid.Inc();
    if (!told_bad_ack_) {
      told_bad_ack_ = true;
      spdlog::warn("edge {}: ignored a config_ack: {}", id_.edge_id, s.ToString());
    }
    return grpc::Status::OK;
  }
  acked_revision_ = ack.revision();
  if (ack.applied()) {
    metrics_.config_acks_applied.Inc();
    spdlog::info("edge {}: applied config revision {}", id_.edge_id, ack.revision());
  } else {
    metrics_.config_acks_refused.Inc();
    spdlog::warn("edge {}: refused config revision {}: {}", id_.edge_id, ack.revision(),
                 utf8::replace_invalid(ack.error().substr(0, 1024)));
  }
  return grpc::Status::OK;
}

grpc::Status EdgeSession::SendCommands(EdgeStream& stream) {
  auto pending = db_.Commands().PendingForEdge(id_.tenant, id_.edge_id, clock_(), kMaxCommandsPerPoll);
  if (!pending.ok()) return ReadFailed("commands", pending.status());
  v1::CloudMessage out;
  // Sent once, and again only if it is still pending kCommandResendAfter later (an edge whose
  // outbox was full took none and said nothing; one that holds it ignores the repeat): what
  // is no longer pending leaves the map.
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, std::chrono::steady_clock::time_point> sent;
  for (auto& c : pending->commands) {
    auto before = sent_commands_.find(c.command_id());
    if (before != sent_commands_.end() && now - before->second < kCommandResendAfter) {
      sent.emplace(c.command_id(), before->second);
      continue;
    }
    out.Clear();
    *out.mutable_command() = c;
    if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
    metrics_.commands_sent.Inc();
    sent.emplace(c.command_id(), now);
  }
  sent_commands_.swap(sent);
  std::set<std::string> still;
  for (auto& id : pending->cancels) {
    if (sent_cancels_.count(id) == 0) {
      out.Clear();
      out.mutable_cancel_command()->set_command_id(id);
      if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
      metrics_.cancels_sent.Inc();
    }
    still.insert(id);
  }
  sent_cancels_.swap(still);
  return grpc::Status::OK;
}

grpc::Status EdgeSession::TakeCommandUpdates(const std::vector<Item>& items, EdgeStream& stream) {
  std::vector<const v1::CommandUpdate*> valid;
  std::vector<const v1::CommandUpdate*> all;
  for (const auto& item : items) {
    const auto& u = item.message.command_update();
    all.push_back(&u);
    absl::Status s = ValidateId("command_update.command_id", u.command_id());
    if (s.ok() && u.result_json().size() > kMaxCommandResultBytes) {
      s = absl::InvalidArgumentError("command_update.result_json is larger than " +
                                     std::to_string(kMaxCommandResultBytes) + " bytes");
    }
    if (s.ok() && u.error().size() > kMaxCommandErrorBytes) {
      s = absl::InvalidArgumentError("command_update.error is longer than " + std::to_string(kMaxCommandErrorBytes) +
                                     " bytes");
    }
    if (s.ok()) {
      valid.push_back(&u);
      continue;
    }
    // Acked (the edge must not send it forever) but not recorded; logged once per session.
    metrics_.updates_invalid.Inc();
    if (!told_bad_update_) {
      told_bad_update_ = true;
      spdlog::warn("edge {}: ignored a command update: {}", id_.edge_id, s.ToString());
    }
  }
  if (!valid.empty()) {
    auto outcomes = db_.Commands().ApplyCommandUpdates(id_.tenant, id_.edge_id, valid);
    if (!outcomes.ok()) {
      const auto& s = outcomes.status();
      if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
      spdlog::error("edge {}: command updates not recorded: {}", id_.edge_id, s.ToString());
      return grpc::Status(grpc::StatusCode::INTERNAL, "the cloud could not record command updates; see its log");
    }
    for (std::size_t i = 0; i < valid.size(); ++i) {
      switch ((*outcomes)[i]) {
        case storage::UpdateOutcome::kRecorded: metrics_.updates_recorded.Inc(); break;
        case storage::UpdateOutcome::kDuplicate: metrics_.updates_duplicate.Inc(); break;
        case storage::UpdateOutcome::kUnknown:
          metrics_.updates_unknown.Inc();
          if (!told_bad_update_) {
            told_bad_update_ = true;
            spdlog::warn("edge {}: update of command '{}' to {} names no command of this edge (or a state an "
                         "edge cannot report); acked and ignored",
                         id_.edge_id, valid[i]->command_id(), static_cast<int>(valid[i]->state()));
          }
          break;
      }
    }
  }
  v1::CloudMessage out;
  for (const v1::CommandUpdate* u : all) {
    out.Clear();
    out.mutable_command_update_ack()->set_command_id(u->command_id());
    out.mutable_command_update_ack()->set_state(u->state());
    if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  }
  return grpc::Status::OK;
}

grpc::Status EdgeSession::TakeTwinReported(const v1::TwinReported& r, EdgeStream& stream) {
  absl::Status valid = ValidateId("twin_reported.device_id", r.device_id());
  if (valid.ok() && r.reported_json().size() > storage::kMaxTwinDocumentBytes) {
    valid = absl::InvalidArgumentError("twin_reported.reported_json is larger than " +
                                       std::to_string(storage::kMaxTwinDocumentBytes) + " bytes");
  }
  if (valid.ok()) {
    auto doc = telemetry::ParseBoundedJson(r.reported_json());
    if (!doc.ok() || !doc->is_object()) valid = absl::InvalidArgumentError("twin_reported.reported_json is not a JSON object");
  }
  const char* outcome = "invalid";
  if (valid.ok()) {
    auto applied = db_.Twins().ApplyReported(id_.tenant, id_.edge_id, r);
    if (!applied.ok()) {
      const auto& s = applied.status();
      if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
      spdlog::error("edge {}: reported twin of device '{}' not stored: {}", id_.edge_id, r.device_id(), s.ToString());
      return grpc::Status(grpc::StatusCode::INTERNAL, "the cloud could not store a reported twin; see its log");
    }
    outcome = *applied == storage::ReportedOutcome::kStored  ? "stored"
              : *applied == storage::ReportedOutcome::kStale ? "stale"
                                                             : "unknown";
    if (*applied == storage::ReportedOutcome::kUnknown && !told_bad_twin_) {
      told_bad_twin_ = true;
      spdlog::warn("edge {}: reported twin of device '{}', which is not behind this edge; acked and ignored",
                   id_.edge_id, r.device_id().substr(0, 128));
    }
  } else if (!told_bad_twin_) {
    // Acked (the edge must not send it forever) but not stored; logged once per session.
    told_bad_twin_ = true;
    spdlog::warn("edge {}: ignored a reported twin: {}", id_.edge_id, valid.ToString());
  }
  metrics_.twin_reports.at(outcome)->Inc();
  v1::CloudMessage out;
  out.mutable_twin_reported_ack()->set_device_id(r.device_id());
  out.mutable_twin_reported_ack()->set_seq(r.seq());
  if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  return grpc::Status::OK;
}

absl::Status EdgeSession::AddEdgeRules(v1::EdgeConfig& config) {
  std::set<std::string, std::less<>> devices;
  for (const auto& d : config.devices()) devices.insert(d.device_id());
  std::string after;
  while (true) {
    auto page = db_.Rules().ListRules(id_.tenant, 1000, after);
    if (!page.ok()) return page.status();
    const bool more = page->size() > 1000;
    if (more) page->resize(1000);
    for (auto& r : *page) {
      if (r.location() != v1::RULE_LOCATION_EDGE || !r.enabled()) continue;
      const bool concerns = r.device_ids().empty() || std::any_of(r.device_ids().begin(), r.device_ids().end(),
                                                                  [&](const auto& id) { return devices.count(id); });
      if (concerns) *config.add_rules() = r;
    }
    if (!more || page->empty()) return absl::OkStatus();
    after = page->back().rule_id();
  }
}

absl::StatusOr<storage::AlarmChange> EdgeSession::EdgeAlarmChange(const v1::EdgeAlarm& a, AlarmLookups& seen) {
  absl::Status valid = ValidateId("alarm.rule_id", a.rule_id());
  if (valid.ok()) valid = ValidateId("alarm.device_id", a.device_id());
  if (valid.ok()) valid = ValidateId("alarm.alarm_type", a.alarm_type());
  const bool clear = a.kind() == "CLEARED";
  if (valid.ok() && !clear && a.kind() != "RAISED" && a.kind() != "SEVERITY_CHANGED") {
    valid = absl::InvalidArgumentError("alarm.kind: RAISED, SEVERITY_CHANGED or CLEARED");
  }
  if (valid.ok() && (!v1::AlarmSeverity_IsValid(a.severity()) || a.severity() == v1::ALARM_SEVERITY_UNSPECIFIED)) {
    valid = absl::InvalidArgumentError("alarm.severity: one of CRITICAL, MAJOR, MINOR, WARNING, INDETERMINATE");
  }
  if (valid.ok()) valid = telemetry::CheckTimestamp(a.ts()).ToStatus("alarm.ts");
  storage::AlarmChange c;
  if (valid.ok() && !a.values_json().empty()) {
    if (a.values_json().size() > kMaxEdgeAlarmValuesBytes) {
      valid = absl::InvalidArgumentError("alarm.values_json is larger than " +
                                         std::to_string(kMaxEdgeAlarmValuesBytes) + " bytes");
    } else if (auto doc = telemetry::ParseBoundedJson(a.values_json()); !doc.ok() || !doc->is_object() ||
               !google::protobuf::util::JsonStringToMessage(a.values_json(), &c.raise.values).ok()) {
      valid = absl::InvalidArgumentError("alarm.values_json is not a JSON object");
    }
  }
  if (!valid.ok()) return absl::InvalidArgumentError("invalid: " + std::string(valid.message()));
  // Only this edge's devices, and only for the rule as it still is, in its scope.
  auto d = seen.devices.find(a.device_id());
  if (d == seen.devices.end()) d = seen.devices.emplace(a.device_id(), db_.Devices().GetDevice(id_.tenant, a.device_id())).first;
  const auto& device = d->second;
  if (!device.ok() && device.status().code() != absl::StatusCode::kNotFound) return device.status();
  if (!device.ok() || device->edge_id() != id_.edge_id) {
    return absl::InvalidArgumentError("invalid: device '" + a.device_id() + "' is not behind this edge");
  }
  auto r = seen.rules.find(a.rule_id());
  if (r == seen.rules.end()) r = seen.rules.emplace(a.rule_id(), db_.Rules().GetRule(id_.tenant, a.rule_id())).first;
  const auto& rule = r->second;
  if (!rule.ok() && rule.status().code() != absl::StatusCode::kNotFound) return rule.status();
  if (!rule.ok() || rule->location() != v1::RULE_LOCATION_EDGE || !rule->enabled() ||
      rule->evaluated_since() != a.rule_updated_at() || rule->alarm_type() != a.alarm_type()) {
    return absl::FailedPreconditionError("stale: rule '" + a.rule_id() + "' changed or went since");
  }
  if (!rules::InScope(*rule, device->device_id(), device->type())) {
    return absl::InvalidArgumentError("invalid: device '" + a.device_id() + "' is not in the scope of rule '" +
                                      a.rule_id() + "'");
  }
  c.clear = clear;
  c.raise.device_id = a.device_id();
  c.raise.type = a.alarm_type();
  c.raise.severity = a.severity();
  c.raise.rule_id = a.rule_id();
  c.raise.ts = a.ts();
  c.raise.source = "edge:" + id_.edge_id;
  return c;
}

grpc::Status EdgeSession::TakeEdgeAlarms(const std::vector<Item>& items, EdgeStream& stream) {
  std::vector<storage::AlarmStore::EdgeAlarmChange> changes;
  std::vector<const char*> outcomes;
  changes.reserve(items.size());
  AlarmLookups seen;
  for (const Item& item : items) {
    const auto& a = item.message.alarm();
    if (a.seq() == 0 || a.seq() > static_cast<std::uint64_t>(INT64_MAX)) {
      // Not a seq an edge numbers with: it cannot move the mark; counted, logged once.
      metrics_.edge_alarms.at("invalid")->Inc();
      if (!told_bad_alarm_) {
        told_bad_alarm_ = true;
        spdlog::warn("edge {}: ignored an alarm with seq {}", id_.edge_id, a.seq());
      }
      continue;
    }
    auto c = EdgeAlarmChange(a, seen);
    if (c.ok()) {
      changes.emplace_back(a.seq(), *std::move(c));
      outcomes.push_back("applied");
      continue;
    }
    const absl::Status& s = c.status();
    if (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kFailedPrecondition) {
      // Passed over (the edge must not send it forever): counted, logged once per session.
      changes.emplace_back(a.seq(), std::nullopt);
      const bool stale = s.code() == absl::StatusCode::kFailedPrecondition;
      outcomes.push_back(stale ? "stale" : "invalid");
      if (!stale && !told_bad_alarm_) {
        told_bad_alarm_ = true;
        spdlog::warn("edge {}: ignored alarm seq {}: {}", id_.edge_id, a.seq(),
                     utf8::replace_invalid(std::string(s.message()).substr(0, 512)));
      }
      continue;
    }
    if (s.code() == absl::StatusCode::kUnavailable) return ToGrpc(s);
    return ReadFailed("rules and devices", s);
  }
  if (changes.empty()) return grpc::Status::OK;
  auto marks = db_.Alarms().ApplyEdgeAlarms(id_.tenant, id_.edge_id, changes);
  if (!marks.ok()) {
    if (marks.status().code() == absl::StatusCode::kUnavailable) return ToGrpc(marks.status());
    spdlog::error("edge {}: alarms {}..{} not applied: {}", id_.edge_id, changes.front().first, changes.back().first,
                  marks.status().ToString());
    return grpc::Status(grpc::StatusCode::INTERNAL, "the cloud could not apply alarms; see its log");
  }
  // What was at or below the mark before this transaction was a repeat (the edge resent it).
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const bool repeat = changes[i].first <= marks->before;
    metrics_.edge_alarms.at(repeat ? "duplicate" : outcomes[i])->Inc();
  }
  v1::CloudMessage out;
  out.mutable_alarm_ack()->set_seq(marks->after);
  if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  return grpc::Status::OK;
}

}  // namespace strata::services
