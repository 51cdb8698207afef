#include "services/edge_hub.h"

#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "services/grpc_status.h"
#include "strata/ids.h"

namespace strata::services {
namespace {

using storage::kDefaultTenant;

}  // namespace

absl::Status ValidateBatch(const v1::TelemetryBatch& batch) {
  if (batch.first_seq() == 0) return absl::InvalidArgumentError("batch.first_seq must be at least 1");
  if (batch.first_seq() > batch.last_seq()) return absl::InvalidArgumentError("batch.first_seq is after last_seq");
  if (batch.readings_size() > kMaxReadingsPerBatch) {
    return absl::InvalidArgumentError("batch holds more than " + std::to_string(kMaxReadingsPerBatch) + " readings");
  }
  std::uint64_t prev = 0;
  for (int i = 0; i < batch.readings_size(); ++i) {
    const auto& r = batch.readings(i);
    const std::string where = "batch.readings[" + std::to_string(i) + "]";
    if (r.seq() < batch.first_seq() || r.seq() > batch.last_seq() || r.seq() <= prev) {
      return absl::InvalidArgumentError(where + ".seq is outside [first_seq, last_seq] or not increasing");
    }
    prev = r.seq();
    if (auto s = ValidateId("device_id", r.device_id()); !s.ok()) {
      return absl::InvalidArgumentError(where + ": " + std::string(s.message()));
    }
    if (auto s = ValidateKey(r.key()); !s.ok()) return absl::InvalidArgumentError(where + ": " + std::string(s.message()));
    if (r.ts() < 0) return absl::InvalidArgumentError(where + ".ts must not be negative");
    if (r.value().kind_case() == v1::Value::KIND_NOT_SET) return absl::InvalidArgumentError(where + ".value is not set");
  }
  return absl::OkStatus();
}

EdgeHub::EdgeHub(storage::Database& db, MetricsRegistry& metrics, Clock clock, EdgeHubOptions options)
    : db_(db),
      clock_(std::move(clock)),
      options_(options),
      connected_edges_(metrics.GetGauge("strata_cloud_edges_connected", "Edges with an open EdgeSync stream")),
      batches_received_(metrics.GetCounter("strata_cloud_edge_batches_received_total", "Telemetry batches received from edges")),
      batches_duplicate_(metrics.GetCounter("strata_cloud_edge_batches_duplicate_total",
                                            "Batches at or below the edge's high-water mark, acked without writing")),
      batches_rejected_(metrics.GetCounter("strata_cloud_edge_batches_rejected_total", "Malformed batches rejected")),
      readings_stored_(metrics.GetCounter("strata_cloud_edge_readings_stored_total", "Readings stored from edge batches")),
      transactions_(metrics.GetCounter("strata_cloud_edge_transactions_total",
                                       "Transactions that stored edge batches (batches waiting together share one)")) {}

// What the stream's reader thread hands to the handler: messages in arrival order, then
// either the end of the stream or the reason the reader stopped reading.
class EdgeHub::Inbox {
 public:
  explicit Inbox(std::size_t capacity) : capacity_(capacity) {}

  // Blocks while full; false once Abandon() was called.
  bool Push(v1::EdgeMessage m) {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return abandoned_ || queue_.size() < capacity_; });
    if (abandoned_) return false;
    queue_.push_back(std::move(m));
    ready_.notify_one();
    return true;
  }

  // The reader is done: `why` is OK at the end of the stream, else why it stopped.
  void Close(grpc::Status why) {
    std::lock_guard lock(mu_);
    closed_ = true;
    why_ = std::move(why);
    ready_.notify_one();
  }

  // The handler leaves: unblocks a Push() that waits for space.
  void Abandon() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    space_.notify_all();
  }

  // Waits for the next message and returns it together with the batches right behind it
  // (up to `max_batches` batches, `max_readings` readings), when it is a batch. Empty once
  // the reader is done and everything was taken; then Why() tells why.
  std::vector<v1::EdgeMessage> Take(std::size_t max_batches, std::size_t max_readings) {
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    std::vector<v1::EdgeMessage> out;
    std::size_t readings = 0;
    while (!queue_.empty()) {
      auto& next = queue_.front();
      if (!out.empty() && (!next.has_batch() || out.size() >= max_batches ||
                           readings + next.batch().readings_size() > max_readings)) {
        break;
      }
      readings += next.has_batch() ? next.batch().readings_size() : 0;
      out.push_back(std::move(next));
      queue_.pop_front();
      if (!out.back().has_batch()) break;  // a heartbeat goes alone
    }
    space_.notify_all();
    return out;
  }

  grpc::Status Why() {
    std::lock_guard lock(mu_);
    return why_;
  }

 private:
  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<v1::EdgeMessage> queue_;
  bool closed_ = false;
  bool abandoned_ = false;
  grpc::Status why_;
};

grpc::Status EdgeHub::Connect(grpc::ServerContext* context,
                              grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>* stream) {
  v1::EdgeMessage in;
  if (!stream->Read(&in)) return grpc::Status(grpc::StatusCode::CANCELLED, "stream closed before hello");
  if (!in.has_hello()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be hello");
  const std::string edge_id = in.hello().edge_id();
  if (auto s = ValidateId("hello.edge_id", edge_id); !s.ok()) return ToGrpc(s);
  if (in.hello().protocol_version() != kEdgeSyncProtocolVersion) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "unsupported protocol_version " + std::to_string(in.hello().protocol_version()) +
                            "; this cloud speaks " + std::to_string(kEdgeSyncProtocolVersion));
  }
  auto mark = db_.Edges().TouchEdge(kDefaultTenant, edge_id, clock_());
  if (!mark.ok()) return ToGrpc(mark.status());

  v1::CloudMessage out;
  out.mutable_welcome()->set_high_water_mark(*mark);
  out.mutable_welcome()->set_protocol_version(kEdgeSyncProtocolVersion);
  if (!stream->Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
  spdlog::info("edge {} connected from {}, high-water mark {}", edge_id, context->peer(), *mark);

  connected_edges_.Add(1);
  struct Disconnect {
    Gauge& g;
    ~Disconnect() { g.Add(-1); }
  } disconnect{connected_edges_};

  // The reader thread reads and checks the next batches while this thread stores the ones
  // before them; batches that are waiting when a transaction starts share it. A malformed
  // message stops the reader (it reads nothing after it), so the batches before it are still
  // stored and acknowledged and the stream then ends with the reason.
  Inbox inbox(kInboxCapacity);
  std::thread reader([&] {
    v1::EdgeMessage m;
    while (stream->Read(&m)) {
      grpc::Status bad;
      if (m.has_batch()) {
        batches_received_.Inc();
        if (auto s = ValidateBatch(m.batch()); !s.ok()) {
          batches_rejected_.Inc();
          spdlog::warn("edge {}: rejected batch {}..{}: {}", edge_id, m.batch().first_seq(), m.batch().last_seq(),
                       s.ToString());
          bad = ToGrpc(s);
        }
      } else if (!m.has_heartbeat()) {
        bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected a batch or a heartbeat");
      }
      if (!bad.ok()) {
        inbox.Close(bad);
        return;
      }
      if (!inbox.Push(std::move(m))) return;
    }
    inbox.Close(grpc::Status::OK);
  });
  auto status = Serve(edge_id, *stream, inbox);
  inbox.Abandon();
  if (!status.ok()) context->TryCancel();  // the reader may be waiting in Read()
  reader.join();
  if (status.ok()) status = inbox.Why();
  spdlog::info("edge {} disconnected{}", edge_id, status.ok() ? "" : ": " + status.error_message());
  return status;
}

grpc::Status EdgeHub::Serve(const std::string& edge_id,
                            grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>& stream, Inbox& inbox) {
  v1::CloudMessage out;
  for (;;) {
    auto messages = inbox.Take(kMaxBatchesPerTransaction, kMaxReadingsPerBatch);
    if (messages.empty()) return grpc::Status::OK;  // the reader is done
    if (messages.front().has_heartbeat()) {
      out.Clear();
      out.mutable_heartbeat()->set_sent_at(clock_());
      if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
      continue;
    }
    std::vector<const v1::TelemetryBatch*> batches;
    for (const auto& m : messages) batches.push_back(&m.batch());
    auto results = db_.Telemetry().ApplyEdgeBatches(kDefaultTenant, edge_id, batches, clock_());
    if (!results.ok()) {
      spdlog::warn("edge {}: batches {}..{} not stored: {}", edge_id, batches.front()->first_seq(),
                   batches.back()->last_seq(), results.status().ToString());
      return ToGrpc(results.status());
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
      if (!stream.Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "edge went away");
    }
  }
}

}  // namespace strata::services
