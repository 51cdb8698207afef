// One edge's session on its EdgeSync stream: everything between the Welcome and the end of
// the stream. The hub (edge_hub.h) owns the stream's lifecycle (slots, the Hello handshake,
// which session of an edge is the live one, the Goodbye); the session checks what the edge
// sends, stores it and answers it.
//
// Two threads work on a session. The stream's reader thread hands every message to
// Receive(), which checks it and queues it; the call's own thread runs Serve(), which takes
// what is queued, stores it and writes the answers. Every message kind the edge may send is
// dispatched in these two places: Receive() for its checks, Serve() for its effect.
//
// Exactly-once storage rests on one rule: a batch and the edge's new high-water mark are
// committed in the same transaction (TelemetryStore::ApplyEdgeBatches), and the ack is sent
// only after that commit. An edge that lost an ack resends; the resent readings are at or
// below the mark and are acknowledged without being written again.
#pragma once

#include <atomic>
#include <functional>
#include <span>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/support/sync_stream.h>

#include <strata/bounded_queue.h>
#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/telemetry/model.h>

#include "storage/store.h"
#include "strata/v1/edgesync.grpc.pb.h"

namespace strata::services {

inline constexpr int kMaxReadingsPerBatch = 50000;
// Most batches stored in one transaction; together they hold at most kMaxReadingsPerBatch
// readings.
inline constexpr std::size_t kMaxBatchesPerTransaction = 32;
// Messages read ahead of the one being stored (the edge's window bounds them anyway).
inline constexpr std::size_t kInboxCapacity = 64;
// ...and at most this many bytes of them; a transaction's group is bounded by it too.
inline constexpr std::size_t kInboxMaxBytes = 16 * 1024 * 1024;
// How often a session of protocol version 2 looks for a new config revision of its edge (and,
// from version 3, for commands to send it; a command queued in this process is sent at once).
inline constexpr std::chrono::milliseconds kConfigPollInterval{1000};
// The largest config revision sent (the edge takes messages up to twice this); a larger one
// is not sent, and the edge's config_error says why.
inline constexpr std::size_t kMaxConfigBytes = 16 * 1024 * 1024;
// Most commands (and cancellations) a session sends per poll, and most in flight to the edge:
// a command stays QUEUED until the edge reports it SENT, and one already sent on this stream
// is sent again only after kCommandResendAfter (an edge with a full outbox takes nothing and
// says nothing; the repeat reaches it once it has room).
inline constexpr int kMaxCommandsPerPoll = 1000;
inline constexpr std::chrono::seconds kCommandResendAfter{30};
// Most command updates recorded in one transaction.
inline constexpr std::size_t kMaxUpdatesPerTransaction = 256;
// Largest result (JSON text) and error of a command update the cloud records.
inline constexpr std::size_t kMaxCommandResultBytes = 64 * 1024;
inline constexpr std::size_t kMaxCommandErrorBytes = 1024;
// Most edge alarm transitions applied in one transaction, and the largest values_json taken.
inline constexpr std::size_t kMaxEdgeAlarmsPerTransaction = 256;
inline constexpr std::size_t kMaxEdgeAlarmValuesBytes = 8 * 1024;

using EdgeStream = grpc::ServerReaderWriterInterface<v1::CloudMessage, v1::EdgeMessage>;

// The edge hub's counters and gauges, registered once and shared by its sessions.
struct EdgeSyncMetrics {
  explicit EdgeSyncMetrics(MetricsRegistry& metrics);

  Gauge& connected_edges;
  Gauge& open_streams;
  Counter& batches_received;
  Counter& batches_duplicate;
  Counter& batches_rejected;
  Counter& streams_refused;
  Counter& sessions_superseded;
  Counter& readings_stored;
  Counter& transactions;
  Counter& configs_sent;
  Counter& config_acks_applied;
  Counter& config_acks_refused;
  Counter& config_acks_invalid;
  Counter& commands_sent;
  Counter& cancels_sent;
  Counter& updates_recorded;
  Counter& updates_duplicate;
  Counter& updates_unknown;
  Counter& updates_invalid;
  // Reported twin documents from edges, by outcome: stored, stale (this seq or a later one
  // was stored), unknown (no such device behind the edge), invalid (not stored).
  std::map<std::string, Counter*, std::less<>> twin_reports;
  // Alarm transitions of edge rules, by outcome: applied, duplicate (at or below the edge's
  // mark), stale (of a rule that changed or went since), invalid (not applied).
  std::map<std::string, Counter*, std::less<>> edge_alarms;
  std::map<telemetry::Reason, Counter*> readings_refused;
};

// What follows a commit of telemetry, shared by every session of a hub. `on_stored` is the
// telemetry's next stop (the cloud rules; it must not block). Fault injection for tests:
// when crash_after > 0, the process exits abruptly (as a crash would) right after committing
// this many batch groups and before acknowledging the last one.
using StoredHook = std::function<void(const std::string& tenant, std::span<const v1::TelemetryBatch* const>)>;
struct CommitHooks {
  StoredHook on_stored;
  std::uint64_t crash_after = 0;
  std::atomic<std::uint64_t> commits{0};
};

// Who the session is: the edge's tenant and id, and the epoch its TouchEdge handed out (the
// database refuses the writes of an older epoch, so two sessions of one edge never both
// write).
struct SessionIdentity {
  std::string tenant;
  std::string edge_id;
  std::uint64_t epoch = 0;
  // The protocol version the stream uses (Welcome.protocol_version); 2 carries config, 3
  // commands.
  std::uint32_t protocol_version = 1;
};

class EdgeSession {
 public:
  EdgeSession(SessionIdentity id, storage::Database& db, Clock clock, EdgeSyncMetrics& metrics,
              CommitHooks& fault);
  // Logs, per reason, how many readings this session refused (the first of each was logged
  // when it came).
  ~EdgeSession();
  EdgeSession(const EdgeSession&) = delete;
  EdgeSession& operator=(const EdgeSession&) = delete;

  // Reader thread: one message as read off the stream. Checks it (a malformed batch frame or
  // an unexpected kind ends the input; readings the telemetry model refuses are taken out of
  // their batch, counted and logged) and queues it for Serve(), waiting for room. False when
  // reading should stop: the message ended the input, or Serve() has left.
  bool Receive(v1::EdgeMessage message);
  // Reader thread: the stream has no more messages.
  void EndOfInput();

  // Call thread: stores and answers what Receive() queued, until the input ended and all of
  // it was answered (OK) or storing or writing failed (the reason; ABORTED when a newer
  // session of the edge fenced this one off).
  grpc::Status Serve(EdgeStream& stream);
  // Any thread: look for commands to send now rather than at the next poll (a command was
  // queued for this edge). Never waits; a session too busy to take the hint polls anyway.
  void Poke();
  // Call thread, after Serve(): a Receive() waiting for room returns false.
  void StopServing();
  // After the reader thread is joined: why the input ended (OK at the end of the stream).
  const grpc::Status& InputStatus() const { return input_status_; }

  const SessionIdentity& id() const { return id_; }

 private:
  struct Item {
    v1::EdgeMessage message;
    std::uint32_t refused = 0;  // readings taken out of the batch by RefuseInvalid
    std::string refusal;        // the first of them
    std::size_t bytes = 0;      // the message's size on the wire
    bool poke = false;          // no message: Poke()
  };

  // Takes the readings the model refuses out of `batch`, counts and logs them; returns how
  // many were taken and the first one's description in `first`.
  std::uint32_t RefuseInvalid(v1::TelemetryBatch& batch, std::string& first);
  // Stores a group of batches in one transaction and acknowledges each.
  grpc::Status StoreBatches(const std::vector<Item>& items, EdgeStream& stream);
  // Sends the edge's configuration when its desired revision is above both what the edge
  // applied and what this session sent.
  grpc::Status SendConfigIfNew(EdgeStream& stream);
  // Records the edge's answer to a revision this session sent.
  grpc::Status TakeConfigAck(const v1::ConfigAck& ack);
  // Sends the edge's QUEUED commands and its pending cancellations not sent on this stream.
  grpc::Status SendCommands(EdgeStream& stream);
  // Records a group of command updates in one transaction and acks each.
  grpc::Status TakeCommandUpdates(const std::vector<Item>& items, EdgeStream& stream);
  grpc::Status TakeTwinReported(const v1::TwinReported& reported, EdgeStream& stream);
  // Applies a group of the edge rules' alarm transitions in one transaction and acks the mark.
  grpc::Status TakeEdgeAlarms(const std::vector<Item>& items, EdgeStream& stream);
  // The alarm change an edge's transition makes, or why it makes none ("invalid: ...",
  // "stale: ...").
  // The devices and rules it reads are kept in `seen` for the rest of the group.
  struct AlarmLookups {
    std::map<std::string, absl::StatusOr<v1::Device>> devices;
    std::map<std::string, absl::StatusOr<v1::Rule>> rules;
  };
  absl::StatusOr<storage::AlarmChange> EdgeAlarmChange(const v1::EdgeAlarm& alarm, AlarmLookups& seen);
  // The tenant's enabled EDGE rules that may concern the edge's devices (version 6).
  absl::Status AddEdgeRules(v1::EdgeConfig& config);
  // A read of the edge's state failed: UNAVAILABLE as it is (the edge reconnects), anything
  // else logged and INTERNAL.
  grpc::Status ReadFailed(const char* what, const absl::Status& s);
  void EndInput(grpc::Status why);
  // Ends the input: a message kind this protocol version does not carry.
  bool Unexpected();

  const SessionIdentity id_;
  storage::Database& db_;
  const Clock clock_;
  EdgeSyncMetrics& metrics_;
  CommitHooks& fault_;
  // Readings refused per reason (reader thread only).
  std::map<telemetry::Reason, std::uint64_t> refused_;
  // What Receive() hands to Serve(), in arrival order: a stream that does not read its acks
  // holds at most kInboxCapacity messages and kInboxMaxBytes here, and the reader then stops
  // reading it; gRPC flow control does the rest.
  BoundedQueue<Item> inbox_;
  // Written by the reader before it closes the inbox; read after it was joined.
  grpc::Status input_status_;
  // Call thread only: the highest revision sent on this stream, and whether a bad ack was
  // logged already (once per session).
  std::uint64_t sent_revision_ = 0;
  std::uint64_t acked_revision_ = 0;  // the highest revision whose ack was recorded
  bool told_bad_ack_ = false;
  // Call thread only: commands (with when they were sent) and cancellations sent on this
  // stream that are still pending.
  std::map<std::string, std::chrono::steady_clock::time_point> sent_commands_;
  std::set<std::string> sent_cancels_;
  bool told_bad_update_ = false;
  bool told_bad_twin_ = false;
  bool told_bad_alarm_ = false;
  std::atomic<bool> poke_pending_{false};
};

// OK when the batch frame is well formed: 1 <= first_seq <= last_seq, at most
// kMaxReadingsPerBatch readings, seqs strictly increasing within [first_seq, last_seq]. The
// readings' content is checked one by one (CheckEdgeReading): a bad one never fails its batch.
absl::Status ValidateBatchFrame(const v1::TelemetryBatch& batch);

// The device id, then the telemetry model's checks of key, ts and value.
telemetry::Verdict CheckEdgeReading(const v1::EdgeReading& reading);

}  // namespace strata::services
