// strata.v1.EdgeSync: the edge hub. One bidirectional stream per connected edge.
//
// Exactly-once storage rests on one rule: a batch and the edge's new high-water mark are
// committed in the same transaction (TelemetryStore::ApplyEdgeBatches), and the ack is sent
// only after that commit. An edge that lost an ack resends; the resent readings are at or
// below the mark and are acknowledged without being written again.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <cstdint>
#include <string>

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/telemetry/model.h>

#include "storage/store.h"
#include "strata/v1/edgesync.grpc.pb.h"

namespace strata::services {

inline constexpr std::uint32_t kEdgeSyncProtocolVersion = 1;
inline constexpr int kMaxReadingsPerBatch = 50000;
// Most batches stored in one transaction; together they hold at most kMaxReadingsPerBatch
// readings.
inline constexpr std::size_t kMaxBatchesPerTransaction = 32;
// Messages read ahead of the one being stored (the edge's window bounds them anyway).
inline constexpr std::size_t kInboxCapacity = 64;
// ...and at most this many bytes of them; a transaction's group is bounded by it too.
inline constexpr std::size_t kInboxMaxBytes = 16 * 1024 * 1024;

struct EdgeHubOptions {
  // A stream must say Hello within this long, or it is closed (DEADLINE_EXCEEDED).
  std::chrono::milliseconds hello_timeout{10000};
  // Most EdgeSync streams open at once (each holds two server threads); more are refused
  // with RESOURCE_EXHAUSTED.
  std::size_t max_streams = 256;
  // Fault injection for tests: when > 0, the process exits abruptly (as a crash would) right
  // after committing this many batches and before acknowledging the last one. Lets a test
  // reproduce "the cloud died between its commit and its ack".
  std::uint64_t crash_after_commits = 0;
};

class EdgeHub final : public v1::EdgeSync::Service {
 public:
  EdgeHub(storage::Database& db, MetricsRegistry& metrics, Clock clock, EdgeHubOptions options = {});

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>* stream) override;

 private:
  struct Inbox;
  struct Live;

  // Stores what the reader thread queued and acknowledges it, until the reader is done
  // (OK) or storing fails (the reason).
  grpc::Status Serve(const std::string& tenant, const std::string& edge_id, std::uint64_t epoch,
                     grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>& stream, Inbox& inbox);
  // Takes the readings the model refuses out of `batch`, counts and logs them; returns how
  // many were taken and the first one's description in `first`.
  std::uint32_t RefuseInvalid(const std::string& edge_id, v1::TelemetryBatch& batch, std::string& first,
                              std::map<telemetry::Reason, std::uint64_t>& logged);
  // Registers the session as the live one of its edge in this process, ending an older one.
  // A session that lost the race to a newer one comes back with `superseded` set.
  std::shared_ptr<Live> Register(const std::string& edge_id, grpc::ServerContext* context, std::uint64_t epoch);
  void Unregister(const std::string& edge_id, const std::shared_ptr<Live>& live);

  storage::Database& db_;
  Clock clock_;
  EdgeHubOptions options_;
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::size_t> streams_{0};
  std::mutex live_mu_;
  std::map<std::string, std::shared_ptr<Live>> live_;  // guarded by live_mu_: edge id -> its session here
  Gauge& connected_edges_;
  Gauge& open_streams_;
  Counter& batches_received_;
  Counter& batches_duplicate_;
  Counter& batches_rejected_;
  Counter& streams_refused_;
  Counter& sessions_superseded_;
  std::map<telemetry::Reason, Counter*> readings_refused_;
  Counter& readings_stored_;
  Counter& transactions_;
};

// OK when the batch frame is well formed: 1 <= first_seq <= last_seq, at most
// kMaxReadingsPerBatch readings, seqs strictly increasing within [first_seq, last_seq]. The
// readings' content is checked one by one (CheckEdgeReading): a bad one never fails its batch.
absl::Status ValidateBatchFrame(const v1::TelemetryBatch& batch);

// The device id, then the telemetry model's checks of key, ts and value.
telemetry::Verdict CheckEdgeReading(const v1::EdgeReading& reading);

}  // namespace strata::services
