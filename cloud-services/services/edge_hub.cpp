#include "services/edge_hub.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "services/grpc_status.h"
#include "services/request_context.h"
#include "strata/ids.h"

namespace strata::services {

EdgeHub::EdgeHub(storage::Database& db, MetricsRegistry& metrics, Clock clock, EdgeHubOptions options)
    : db_(db), clock_(std::move(clock)), options_(options), metrics_(metrics) {
  fault_.crash_after = options_.crash_after_commits;
  fault_.on_stored = options_.on_stored;
}

struct EdgeHub::Live {
  grpc::ServerContext* context;
  std::uint64_t epoch;
  std::atomic<bool> superseded{false};
  EdgeSession* session = nullptr;  // guarded by live_mu_: set while the session serves
  std::string tenant;              // guarded by live_mu_
};

void EdgeHub::NotifyCommands(const std::string& tenant, const std::string& edge_id) {
  std::lock_guard lock(live_mu_);
  if (auto it = live_.find(edge_id); it != live_.end() && it->second->session && it->second->tenant == tenant) {
    it->second->session->Poke();
  }
}

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
  live->session = nullptr;
  if (auto it = live_.find(edge_id); it != live_.end() && it->second == live) live_.erase(it);
}

grpc::Status EdgeHub::Connect(grpc::ServerContext* context,
                              grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>* stream) {
  struct StreamSlot {
    std::atomic<std::size_t>& n;
    ~StreamSlot() { --n; }
  } slot{streams_};
  if (++streams_ > options_.max_streams) {
    metrics_.streams_refused.Inc();
    spdlog::warn("EdgeSync: refused a stream from {}: {} streams are open already", context->peer(),
                 options_.max_streams);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "this cloud serves at most " + std::to_string(options_.max_streams) +
                            " edge streams at once; retry later");
  }
  metrics_.open_streams.Add(1);
  struct OpenStream {
    Gauge& g;
    ~OpenStream() { g.Add(-1); }
  } open{metrics_.open_streams};

  // The reader thread reads every message, from Hello on, and hands those after it to the
  // session (Receive), while this thread serves the session (stores and answers what came
  // before). Only a malformed message stops the reader (it reads nothing after it), so what
  // came before it is still stored and acknowledged and the stream then ends with the reason.
  //
  // The handshake: the reader reads the first message and waits; this thread waits for it
  // until the Hello deadline (cancelling the stream when it passes), answers it, and lets
  // the reader go on (kGo) or stop (kStop).
  enum class Phase { kWaiting, kGotFirst, kNoFirst, kGo, kStop };
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  Phase phase = Phase::kWaiting;  // guarded by gate_mu
  v1::EdgeMessage first;          // guarded by gate_mu until kGotFirst
  std::optional<EdgeSession> session;  // made before kGo; used by the reader only after it
  auto set_phase = [&](Phase p) {
    std::lock_guard lock(gate_mu);
    phase = p;
    gate_cv.notify_all();
  };

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
    v1::EdgeMessage m;
    while (stream->Read(&m)) {
      if (!session->Receive(std::move(m))) return;  // a malformed message, or the handler left
      m.Clear();
    }
    session->EndOfInput();
  });
  // Ends the handshake with `status`: the reader is told to stop and joined. A reader still
  // waiting in Read() (no first message yet) can only be woken by cancelling the call, so
  // that client sees CANCELLED; the log and the counter say why.
  auto refuse = [&](grpc::Status status) {
    metrics_.streams_refused.Inc();
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
  if (first.hello().protocol_version() < 1) {
    return refuse(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                               "unsupported protocol_version " + std::to_string(first.hello().protocol_version()) +
                                   "; this cloud speaks 1 to " + std::to_string(kEdgeSyncProtocolVersion)));
  }
  const std::uint32_t version = std::min(first.hello().protocol_version(), kEdgeSyncProtocolVersion);
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return refuse(ToGrpc(caller.status()));
  const std::string edge_id = first.hello().edge_id();
  auto touched = db_.Edges().TouchEdge(caller->tenant, edge_id, clock_());
  if (!touched.ok()) {
    spdlog::error("edge {}: cannot start a session: {}", edge_id, touched.status().ToString());
    return refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cloud cannot reach its database; retry later"));
  }
  auto live = Register(edge_id, context, touched->epoch);
  if (live->superseded) {
    return refuse(grpc::Status(grpc::StatusCode::ABORTED,
                               "a newer session of edge '" + edge_id + "' started; this one is closed"));
  }

  v1::CloudMessage out;
  out.mutable_welcome()->set_high_water_mark(touched->high_water_mark);
  if (version >= 6) out.mutable_welcome()->set_alarm_mark(touched->alarm_mark);
  out.mutable_welcome()->set_protocol_version(version);
  if (!stream->Write(out)) {
    Unregister(edge_id, live);
    return refuse(grpc::Status(grpc::StatusCode::CANCELLED, "edge went away"));
  }
  spdlog::info("edge {} connected from {}, high-water mark {}, session {}, protocol version {}", edge_id,
               context->peer(), touched->high_water_mark, touched->epoch, version);
  session.emplace(SessionIdentity{caller->tenant, edge_id, touched->epoch, version}, db_, clock_, metrics_, fault_);
  {
    std::lock_guard lock(live_mu_);
    live->session = &*session;
    live->tenant = caller->tenant;
  }
  set_phase(Phase::kGo);

  metrics_.connected_edges.Add(1);
  struct Disconnect {
    Gauge& g;
    ~Disconnect() { g.Add(-1); }
  } disconnect{metrics_.connected_edges};

  // Ending with an error, the cloud says why in a Goodbye first: cancelling the call (the only
  // way to wake a reader waiting in Read()) makes the call's own status CANCELLED at the edge.
  auto goodbye = [&](const grpc::Status& why) {
    out.Clear();
    out.mutable_goodbye()->set_code(static_cast<int>(why.error_code()));
    out.mutable_goodbye()->set_message(why.error_message());
    stream->Write(out);  // best effort: the edge may be gone
  };
  auto status = session->Serve(*stream);
  session->StopServing();  // a Receive() waiting for room returns
  if (!status.ok()) {
    goodbye(status);
    context->TryCancel();
  }
  reader.join();
  Unregister(edge_id, live);
  // Best effort: a cloud that cannot say so leaves the edge shown connected until its
  // last_seen_at is old (RegistryService).
  if (auto s = db_.Edges().EndSession(caller->tenant, edge_id, touched->epoch); !s.ok()) {
    spdlog::warn("edge {}: the end of session {} was not recorded: {}", edge_id, touched->epoch, s.ToString());
  }
  if (status.ok()) {
    status = session->InputStatus();  // the reader stopped at a malformed message, or the stream ended
    if (!status.ok()) goodbye(status);
  }
  if (live->superseded || status.error_code() == grpc::StatusCode::ABORTED) {
    metrics_.sessions_superseded.Inc();
    status = grpc::Status(grpc::StatusCode::ABORTED, "a newer session of edge '" + edge_id +
                                                         "' started; this one is closed");
  }
  spdlog::info("edge {} disconnected (session {}){}", edge_id, touched->epoch,
               status.ok() ? "" : ": " + status.error_message());
  return status;
}

}  // namespace strata::services
