#include "services/edge_hub.h"

#include <unistd.h>

#include <condition_variable>
#include <limits>
#include <optional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <utf8cpp/utf8.h>

#include <strata/bounded_queue.h>

#include "services/grpc_status.h"
#include "services/request_context.h"
#include "strata/ids.h"

namespace strata::services {
namespace {


}  // namespace

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

EdgeHub::EdgeHub(storage::Database& db, MetricsRegistry& metrics, Clock clock, EdgeHubOptions options)
    : db_(db),
      clock_(std::move(clock)),
      options_(options),
      connected_edges_(metrics.GetGauge("strata_cloud_edges_connected", "Edges with an open EdgeSync stream")),
      open_streams_(metrics.GetGauge("strata_cloud_edge_streams_open",
                                     "EdgeSync streams holding a slot (--max-edge-streams), before and after Hello")),
      batches_received_(metrics.GetCounter("strata_cloud_edge_batches_received_total", "Telemetry batches received from edges")),
      batches_duplicate_(metrics.GetCounter("strata_cloud_edge_batches_duplicate_total",
                                            "Batches at or below the edge's high-water mark, acked without writing")),
      batches_rejected_(metrics.GetCounter("strata_cloud_edge_batches_rejected_total",
                                           "Batches whose frame was malformed (seqs out of order); the stream ends")),
      streams_refused_(metrics.GetCounter("strata_cloud_edge_streams_refused_total",
                                          "EdgeSync streams refused: no valid Hello in time, or too many streams")),
      sessions_superseded_(metrics.GetCounter("strata_cloud_edge_sessions_superseded_total",
                                              "EdgeSync sessions ended because a newer session of the edge started")),
      readings_stored_(metrics.GetCounter("strata_cloud_edge_readings_stored_total", "Readings stored from edge batches")),
      transactions_(metrics.GetCounter("strata_cloud_edge_transactions_total",
                                       "Transactions that stored edge batches (batches waiting together share one)")) {
  for (auto reason : telemetry::kAllReasons) {
    readings_refused_[reason] = &metrics.GetCounter(
        "strata_cloud_edge_readings_refused_total", "Readings from edges refused by the telemetry model (not stored)",
        {{"reason", telemetry::ReasonLabel(reason)}});
  }
}

struct EdgeHub::Live {
  grpc::ServerContext* context;
  std::uint64_t epoch;
  std::atomic<bool> superseded{false};
};

std::shared_ptr<EdgeHub::Live> EdgeHub::Register(const std::string& edge_id, grpc::ServerContext* context,
                                                 std::uint64_t epoch) {
  auto live = std::make_shared<Live>();
  live->context = context;
  live->epoch = epoch;
  std::lock_guard lock(live_mu_);
  auto& slot = live_[edge_id];
  if (slot && slot->epoch > epoch) {
    // A newer session registered first (this handshake was slow): this one is the stale one.
    live->superseded = true;
    return live;
  }
  if (slot) {
    // The database fences the old session anyway (its next write is refused); ending it
    // here frees its threads now instead of at its next batch.
    slot->superseded = true;
    slot->context->TryCancel();
  }
  slot = live;
  return live;
}

void EdgeHub::Unregister(const std::string& edge_id, const std::shared_ptr<Live>& live) {
  std::lock_guard lock(live_mu_);
  if (auto it = live_.find(edge_id); it != live_.end() && it->second == live) live_.erase(it);
}

std::uint32_t EdgeHub::RefuseInvalid(const std::string& edge_id, v1::TelemetryBatch& batch, std::string& first,
                                     std::map<telemetry::Reason, std::uint64_t>& logged) {
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
    readings_refused_.at(verdict.reason)->Inc();
    // The refused reading's own fields may be what is wrong with it (invalid UTF-8, too
    // long): quoted shortened and made valid UTF-8, since the text goes into a proto string.
    std::string what = utf8::replace_invalid("seq " + std::to_string(r.seq()) + " (device '" +
                                             r.device_id().substr(0, 128) + "', key '" + r.key().substr(0, 256) +
                                             "'): " + verdict.message);
    // Logged once per reason and session, with this first one as the sample; the session's
    // end logs the totals.
    if (logged[verdict.reason]++ == 0) spdlog::warn("edge {}: refused reading {}", edge_id, what);
    if (first.empty()) first = std::move(what);
  }
  if (refused > 0) readings->DeleteSubrange(kept, readings->size() - kept);
  return refused;
}

// What the stream's reader thread hands to the handler: messages in arrival order (a bounded
// queue: a stream that does not read its acks holds at most kInboxCapacity messages and
// kInboxMaxBytes here, and the reader then stops reading it; gRPC flow control does the
// rest), then why the reader stopped.
struct EdgeHub::Inbox {
  struct Item {
    v1::EdgeMessage message;
    std::uint32_t refused = 0;  // readings taken out of the batch by RefuseInvalid
    std::string refusal;        // the first of them
    std::size_t bytes = 0;      // the message's size on the wire
  };

  Inbox() : queue(QueueLimits{.max_items = kInboxCapacity, .max_bytes = kInboxMaxBytes}, [](const Item& i) { return i.bytes; }) {}

  // The reader is done: `status` is OK at the end of the stream, else why it stopped.
  void Close(grpc::Status status) {
    why = std::move(status);
    queue.Close();
  }

  // Waits for the next message and returns it together with the batches right behind it
  // (up to `max_batches` batches, `max_readings` readings), when it is a batch; a heartbeat
  // goes alone. Empty once the reader is done and everything was taken.
  std::vector<Item> Take(std::size_t max_batches, std::size_t max_readings) {
    auto joins = [&](const Item& next, std::span<const Item> taken) {
      if (!next.message.has_batch() || !taken.back().message.has_batch() || taken.size() >= max_batches) return false;
      std::size_t readings = static_cast<std::size_t>(next.message.batch().readings_size());
      for (const Item& t : taken) readings += static_cast<std::size_t>(t.message.batch().readings_size());
      return readings <= max_readings;
    };
    std::vector<Item> out;
    queue.PopBatch(out, max_batches, std::nullopt, std::chrono::milliseconds(0), joins);
    return out;
  }

  BoundedQueue<Item> queue;
  // Written by the reader before it closes the queue; read by the handler after joining it.
  grpc::Status why;
};

grpc::Status EdgeHub::Connect(grpc::ServerContext* context,
                              grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>* stream) {
  struct StreamSlot {
    std::atomic<std::size_t>& n;
    ~StreamSlot() { --n; }
  } slot{streams_};
  if (++streams_ > options_.max_streams) {
    streams_refused_.Inc();
    spdlog::warn("EdgeSync: refused a stream from {}: {} streams are open already", context->peer(),
                 options_.max_streams);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "this cloud serves at most " + std::to_string(options_.max_streams) +
                            " edge streams at once; retry later");
  }
  open_streams_.Add(1);
  struct OpenStream {
    Gauge& g;
    ~OpenStream() { g.Add(-1); }
  } open{open_streams_};

  // The reader thread reads every message, from Hello on, while this thread stores the
  // batches before them; batches that are waiting when a transaction starts share it. Only
  // a malformed batch frame stops the reader (it reads nothing after it), so the batches
  // before it are still stored and acknowledged and the stream then ends with the reason.
  // Readings the telemetry model refuses are taken out of their batch there and counted.
  //
  // The handshake: the reader reads the first message and waits; this thread waits for it
  // until the Hello deadline (cancelling the stream when it passes), answers it, and lets
  // the reader go on (kGo) or stop (kStop).
  enum class Phase { kWaiting, kGotFirst, kNoFirst, kGo, kStop };
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  Phase phase = Phase::kWaiting;  // guarded by gate_mu
  v1::EdgeMessage first;          // guarded by gate_mu until kGotFirst
  std::string edge_id;            // written before kGo; read by the reader only after it
  auto set_phase = [&](Phase p) {
    std::lock_guard lock(gate_mu);
    phase = p;
    gate_cv.notify_all();
  };

  Inbox inbox;
  std::thread reader([&] {
    {
      v1::EdgeMessage m;
      const bool got = stream->Read(&m);
      std::unique_lock lock(gate_mu);
      if (phase == Phase::kWaiting) {  // else the handler gave up waiting (kStop)
        first = std::move(m);
        phase = got ? Phase::kGotFirst : Phase::kNoFirst;
        gate_cv.notify_all();
      }
      gate_cv.wait(lock, [&] { return phase == Phase::kGo || phase == Phase::kStop; });
      if (phase == Phase::kStop) return;
    }
    std::map<telemetry::Reason, std::uint64_t> logged;
    Inbox::Item item;
    while (stream->Read(&item.message)) {
      grpc::Status bad;
      item.refused = 0;
      item.refusal.clear();
      item.bytes = item.message.ByteSizeLong();
      if (item.message.has_batch()) {
        batches_received_.Inc();
        auto* batch = item.message.mutable_batch();
        if (auto s = ValidateBatchFrame(*batch); !s.ok()) {
          batches_rejected_.Inc();
          spdlog::warn("edge {}: rejected batch {}..{}: {}", edge_id, batch->first_seq(), batch->last_seq(),
                       s.ToString());
          bad = ToGrpc(s);
        } else {
          item.refused = RefuseInvalid(edge_id, *batch, item.refusal, logged);
        }
      } else if (!item.message.has_heartbeat()) {
        bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected a batch or a heartbeat");
      }
      if (!bad.ok()) {
        inbox.Close(bad);
        return;
      }
      if (!inbox.queue.Push(std::move(item))) return;  // the handler left
    }
    for (const auto& [reason, n] : logged) {
      if (n > 1) {
        spdlog::warn("edge {}: refused {} readings in this session ({})", edge_id, n, telemetry::ReasonLabel(reason));
      }
    }
    inbox.Close(grpc::Status::OK);
  });
  // Ends the handshake with `status`: the reader is told to stop and joined. A reader still
  // waiting in Read() (no first message yet) can only be woken by cancelling the call, so
  // that client sees CANCELLED; the log and the counter say why.
  auto refuse = [&](grpc::Status status) {
    streams_refused_.Inc();
    {
      std::lock_guard lock(gate_mu);
      if (phase == Phase::kWaiting) context->TryCancel();
      phase = Phase::kStop;
      gate_cv.notify_all();
    }
    reader.join();
    spdlog::warn("EdgeSync: stream from {} refused: {}", context->peer(), status.error_message());
    return status;
  };

  {
    std::unique_lock lock(gate_mu);
    const auto deadline = std::chrono::steady_clock::now() + options_.hello_timeout;
    if (!gate_cv.wait_until(lock, deadline, [&] { return phase != Phase::kWaiting; })) {
      lock.unlock();
      return refuse(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 "no hello within " + std::to_string(options_.hello_timeout.count()) + " ms"));
    }
    if (phase == Phase::kNoFirst) {
      lock.unlock();
      return refuse(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed before hello"));
    }
  }
  if (!first.has_hello()) {
    return refuse(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be hello"));
  }
  if (auto s = ValidateId("hello.edge_id", first.hello().edge_id()); !s.ok()) return refuse(ToGrpc(s));
  if (first.hello().protocol_version() != kEdgeSyncProtocolVersion) {
    return refuse(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                               "unsupported protocol_version " + std::to_string(first.hello().protocol_version()) +
                                   "; this cloud speaks " + std::to_string(kEdgeSyncProtocolVersion)));
  }
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return refuse(ToGrpc(caller.status()));
  edge_id = first.hello().edge_id();
  auto session = db_.Edges().TouchEdge(caller->tenant, edge_id, clock_());
  if (!session.ok()) {
    spdlog::error("edge {}: cannot start a session: {}", edge_id, session.status().ToString());
    return refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cloud cannot reach its database; retry later"));
  }
  auto live = Register(edge_id, context, session->epoch);
  if (live->superseded) {
    return refuse(grpc::Status(grpc::StatusCode::ABORTED,
                               "a newer session of edge '" + edge_id + "' started; this one is closed"));
  }

  v1::CloudMessage out;
  out.mutable_welcome()->set_high_water_mark(session->high_water_mark);
  out.mutable_welcome()->set_protocol_version(kEdgeSyncProtocolVersion);
  if (!stream->Write(out)) {
    Unregister(edge_id, live);
    return refuse(grpc::Status(grpc::StatusCode::CANCELLED, "edge went away"));
  }
  spdlog::info("edge {} connected from {}, high-water mark {}, session {}", edge_id, context->peer(),
               session->high_water_mark, session->epoch);
  set_phase(Phase::kGo);

  connected_edges_.Add(1);
  struct Disconnect {
    Gauge& g;
    ~Disconnect() { g.Add(-1); }
  } disconnect{connected_edges_};

  // Ending with an error, the cloud says why in a Goodbye first: cancelling the call (the only
  // way to wake a reader waiting in Read()) makes the call's own status CANCELLED at the edge.
  auto goodbye = [&](const grpc::Status& why) {
    out.Clear();
    out.mutable_goodbye()->set_code(static_cast<int>(why.error_code()));
    out.mutable_goodbye()->set_message(why.error_message());
    stream->Write(out);  // best effort: the edge may be gone
  };
  auto status = Serve(caller->tenant, edge_id, session->epoch, *stream, inbox);
  inbox.queue.Close();  // the handler leaves: a Push() waiting for space returns
  if (!status.ok()) {
    goodbye(status);
    context->TryCancel();
  }
  reader.join();
  Unregister(edge_id, live);
  if (status.ok()) {
    status = inbox.why;  // the reader stopped at a malformed frame, or the stream ended
    if (!status.ok()) goodbye(status);
  }
  if (live->superseded || status.error_code() == grpc::StatusCode::ABORTED) {
    sessions_superseded_.Inc();
    status = grpc::Status(grpc::StatusCode::ABORTED, "a newer session of edge '" + edge_id +
                                                         "' started; this one is closed");
  }
  spdlog::info("edge {} disconnected (session {}){}", edge_id, session->epoch,
               status.ok() ? "" : ": " + status.error_message());
  return status;
}

grpc::Status EdgeHub::Serve(const std::string& tenant, const std::string& edge_id, std::uint64_t epoch,
                            grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>& stream, Inbox& inbox) {
  v1::CloudMessage out;
  for (;;) {
    auto items = inbox.Take(kMaxBatchesPerTransaction, kMaxReadingsPerBatch);
    if (items.empty()) return grpc::Status::OK;  // the reader is done
    if (items.front().message.has_heartbeat()) {
      out.Clear();
      out.mutable_heartbeat()->set_sent_at(clock_());
      if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
      continue;
    }
    std::vector<const v1::TelemetryBatch*> batches;
    for (const auto& item : items) batches.push_back(&item.message.batch());
    auto results = db_.Telemetry().ApplyEdgeBatches(tenant, edge_id, batches, clock_(), epoch);
    if (!results.ok()) {
      const auto& s = results.status();
      if (s.code() == absl::StatusCode::kAborted) return ToGrpc(s);  // fenced off by a newer session
      // Every reading passed the telemetry model, so this is the database, not the data: the
      // edge keeps the batches and sends them again. The detail stays in this log.
      spdlog::error("edge {}: batches {}..{} not stored: {}", edge_id, batches.front()->first_seq(),
                    batches.back()->last_seq(), s.ToString());
      if (s.code() == absl::StatusCode::kUnavailable) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cloud cannot reach its database; the batches will be resent");
      }
      return grpc::Status(grpc::StatusCode::INTERNAL, "the cloud could not store batches " +
                                                           std::to_string(batches.front()->first_seq()) + ".." +
                                                           std::to_string(batches.back()->last_seq()) +
                                                           "; see the cloud's log");
    }
    transactions_.Inc();
    if (options_.crash_after_commits > 0 && ++commits_ >= options_.crash_after_commits) {
      spdlog::critical("fault injection: exiting after commit of batches {}..{}, before their acks",
                       batches.front()->first_seq(), batches.back()->last_seq());
      spdlog::default_logger()->flush();
      _exit(86);
    }
    // Counted for the whole group before any ack goes out: the group is committed even if the
    // edge goes away halfway through its acks.
    for (const auto& result : *results) {
      if (result.written == 0) batches_duplicate_.Inc();
      readings_stored_.Inc(result.written);
    }
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
  }
}

}  // namespace strata::services
