#include "services/edge_hub.h"

#include <unistd.h>

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
      readings_stored_(metrics.GetCounter("strata_cloud_edge_readings_stored_total", "Readings stored from edge batches")) {}

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

  while (stream->Read(&in)) {
    out.Clear();
    if (in.has_heartbeat()) {
      out.mutable_heartbeat()->set_sent_at(clock_());
    } else if (in.has_batch()) {
      const auto& batch = in.batch();
      batches_received_.Inc();
      if (auto s = ValidateBatch(batch); !s.ok()) {
        batches_rejected_.Inc();
        spdlog::warn("edge {}: rejected batch {}..{}: {}", edge_id, batch.first_seq(), batch.last_seq(), s.ToString());
        return ToGrpc(s);
      }
      auto result = db_.Telemetry().ApplyEdgeBatch(kDefaultTenant, edge_id, batch, clock_());
      if (!result.ok()) {
        spdlog::warn("edge {}: batch {}..{} not stored: {}", edge_id, batch.first_seq(), batch.last_seq(),
                     result.status().ToString());
        return ToGrpc(result.status());
      }
      if (options_.crash_after_commits > 0 && ++commits_ >= options_.crash_after_commits) {
        spdlog::critical("fault injection: exiting after commit of batch {}..{}, before its ack", batch.first_seq(),
                         batch.last_seq());
        spdlog::default_logger()->flush();
        _exit(86);
      }
      if (result->written == 0) batches_duplicate_.Inc();
      readings_stored_.Inc(result->written);
      auto* ack = out.mutable_ack();
      ack->set_last_seq(batch.last_seq());
      ack->set_high_water_mark(result->high_water_mark);
      ack->set_written(result->written);
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected a batch or a heartbeat");
    }
    if (!stream->Write(out)) break;
  }
  spdlog::info("edge {} disconnected", edge_id);
  return grpc::Status::OK;
}

}  // namespace strata::services
