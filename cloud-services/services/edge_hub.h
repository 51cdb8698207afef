// strata.v1.EdgeSync: the edge hub. One bidirectional stream per connected edge.
//
// The hub owns each stream's lifecycle: a slot among --max-edge-streams, the Hello handshake
// (within the Hello deadline, a supported protocol version, a valid edge id), the edge's
// session epoch from the database, which session of an edge is the live one in this process
// (a newer one ends the older), the Welcome, the reader thread, and the Goodbye that says why
// a stream ends with an error. What happens in between belongs to the edge's session
// (edge_session.h): checking, storing and answering every message the edge sends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <strata/clock.h>
#include <strata/metrics.h>

#include "services/edge_session.h"
#include "storage/store.h"
#include "strata/v1/edgesync.grpc.pb.h"

namespace strata::services {

// The highest EdgeSync version this cloud speaks; it serves every version from 1 up to it.
inline constexpr std::uint32_t kEdgeSyncProtocolVersion = 6;

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
  // Called with every group of batches once it is committed (before its acks).
  StoredHook on_stored;
};

class EdgeHub final : public v1::EdgeSync::Service {
 public:
  EdgeHub(storage::Database& db, MetricsRegistry& metrics, Clock clock, EdgeHubOptions options = {});

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::CloudMessage, v1::EdgeMessage>* stream) override;

  // A command of the edge was queued or cancelled: its session in this process (if it has
  // one here) sends it now instead of at its next poll.
  void NotifyCommands(const std::string& tenant, const std::string& edge_id);

 private:
  struct Live;

  // Registers the session as the live one of its edge in this process, ending an older one.
  // A session that lost the race to a newer one comes back with `superseded` set.
  std::shared_ptr<Live> Register(const std::string& edge_id, grpc::ServerContext* context, std::uint64_t epoch);
  void Unregister(const std::string& edge_id, const std::shared_ptr<Live>& live);

  storage::Database& db_;
  Clock clock_;
  EdgeHubOptions options_;
  EdgeSyncMetrics metrics_;
  CommitHooks fault_;
  std::atomic<std::size_t> streams_{0};
  std::mutex live_mu_;
  std::map<std::string, std::shared_ptr<Live>> live_;  // guarded by live_mu_: edge id -> its session here
};

}  // namespace strata::services
