// strata.v1.EdgeSync: the edge hub. One bidirectional stream per connected edge.
//
// Exactly-once storage rests on one rule: a batch and the edge's new high-water mark are
// committed in the same transaction (TelemetryStore::ApplyEdgeBatches), and the ack is sent
// only after that commit. An edge that lost an ack resends; the resent readings are at or
// below the mark and are acknowledged without being written again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <strata/clock.h>
#include <strata/metrics.h>

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

struct EdgeHubOptions {
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
  class Inbox;

  // Stores what the reader thread queued and acknowledges it, until the reader is done
  // (OK) or storing fails (the reason).
  grpc::Status Serve(const std::string& edge_id, grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>& stream,
                     Inbox& inbox);

  storage::Database& db_;
  Clock clock_;
  EdgeHubOptions options_;
  std::atomic<std::uint64_t> commits_{0};
  Gauge& connected_edges_;
  Counter& batches_received_;
  Counter& batches_duplicate_;
  Counter& batches_rejected_;
  Counter& readings_stored_;
  Counter& transactions_;
};

// OK when the batch is well formed: first_seq <= last_seq, seqs strictly increasing within
// [first_seq, last_seq], valid device ids and keys, every value set.
absl::Status ValidateBatch(const v1::TelemetryBatch& batch);

}  // namespace strata::services
