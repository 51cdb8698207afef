// The edge's command outbox: commands the cloud sent for this edge's devices, kept in their
// own SQLite file (commands.db in the data directory) from the moment the edge takes them
// until the cloud has recorded how they ended.
//
// Lifecycle on the edge (states as in strata/v1/commands.proto):
//   Take()        the command is stored SENT, and only then reported SENT (the cloud stops
//                 sending it); a command already held is not taken twice.
//   delivery      a thread publishes each SENT command to its device at QoS 1 on
//                 {prefix}/{device_id}/commands/{command_id} once the device is present (it
//                 sent anything within the presence window), and stores it DELIVERED when
//                 the broker acknowledged it. SENT past its expires_at: EXPIRED, never
//                 published. DELIVERED without a reply for timeout_ms: TIMED_OUT.
//   OnResponse()  the device's reply on {prefix}/{device_id}/commands/{command_id}/response:
//                 SUCCEEDED or FAILED, with its result. A reply to a command that has ended,
//                 that is unknown, from another device or malformed is counted and logged
//                 (once per reason), and changes nothing.
//   Cancel()      the cloud cancelled it: CANCELLED unless it has ended (then its final state
//                 is reported again, so that the cloud knows the edge has answered).
// Every transition is committed together with a report of it; reports are sent up (the
// uplink asks ReportsAfter) on every stream until the cloud acks them, so each reaches the
// cloud through reconnects and restarts. A crash between the broker's PUBACK and the DELIVERED
// commit publishes the command again after the restart: devices dedupe by command_id
// (docs/api.md says so).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/sqlite/sqlite.h>

#include "strata/v1/edgesync.pb.h"

namespace strata::edge {

struct CommandOutboxOptions {
  std::string path;  // the SQLite file
  std::string topic_prefix = "v1/devices";
  // A device counts as present this long after its last message; 0: always present (publish
  // at once, for devices that only listen, with a persistent MQTT session).
  std::chrono::milliseconds presence_window{std::chrono::minutes(2)};
  // Most commands held that have not ended; the cloud keeps further ones QUEUED until there
  // is room.
  std::size_t max_open = 100000;
  // Ended commands whose reports the cloud has recorded are forgotten this long after they
  // ended (until then a late reply is recognised as late).
  std::chrono::milliseconds keep_ended{std::chrono::hours(24)};
};

// Publishes each (topic, payload) at QoS 1 and returns once the broker acknowledged them: one
// status per message, in order.
using CommandPublisher =
    std::function<std::vector<absl::Status>(const std::vector<std::pair<std::string, std::string>>& messages)>;

class CommandOutbox {
 public:
  static absl::StatusOr<std::unique_ptr<CommandOutbox>> Open(CommandOutboxOptions options, MetricsRegistry& metrics,
                                                             Clock clock);
  ~CommandOutbox();  // Stop()
  CommandOutbox(const CommandOutbox&) = delete;
  CommandOutbox& operator=(const CommandOutbox&) = delete;

  // Starts the delivery thread, which publishes through `publish`.
  void Start(CommandPublisher publish);
  void Stop();

  // The uplink's reader thread. An error (the store could not write) means the command was
  // not taken: the caller reports nothing, and the cloud sends it again on the next stream.
  absl::Status Take(const v1::CommandRequest& command);
  absl::Status Cancel(const std::string& command_id);
  void Acked(const v1::CommandUpdateAck& ack);

  // The uplink's writer: reports not yet acknowledged, oldest first, with a sequence number
  // above `after` (a stream starts at 0).
  absl::StatusOr<std::vector<std::pair<std::int64_t, v1::CommandUpdate>>> ReportsAfter(std::int64_t after,
                                                                                       std::size_t max);
  // The highest sequence number a report has had; rises with every new report.
  std::int64_t LastReportSeq() const { return last_report_seq_.load(); }
  // Called (on the thread that made it) after each new report is committed.
  void SetReportListener(std::function<void()> listener);

  // Ingest: devices that sent a message now.
  void DevicesSeen(const std::vector<std::string>& device_ids);
  // Ingest: a message on a response topic.
  void OnResponse(const std::string& device_id, const std::string& command_id, std::string_view payload);

  struct Stats {
    std::map<int, std::int64_t> by_state;  // CommandState number -> commands held in it
    std::int64_t reports_pending = 0;
  };
  Stats GetStats();

  // For tests: one pass of the delivery loop now (expiry, timeouts, delivery).
  void RunOnce();

 private:
  CommandOutbox(std::unique_ptr<sqlite::Connection> db, CommandOutboxOptions options, MetricsRegistry& metrics,
                Clock clock);
  void Loop();
  // Under mu_: moves `command_id` from a state in [from_min, from_max] to `to` and adds its
  // report, in one transaction; false when it was not in such a state.
  absl::StatusOr<bool> Transition(const std::string& command_id, int from_min, int from_max, int to,
                                  std::int64_t at, const std::string& result_json, const std::string& error);
  // The same inside the caller's transaction.
  absl::StatusOr<bool> TransitionInTx(const std::string& command_id, int from_min, int from_max, int to,
                                      std::int64_t at, const std::string& result_json, const std::string& error);
  absl::Status AddReport(const std::string& command_id, int state, std::int64_t at, const std::string& result_json,
                         const std::string& error);
  void Reported();
  void Reject(const char* reason, const std::string& detail);
  bool Present(const std::string& device_id, std::int64_t now);

  std::mutex mu_;  // the connection, and one transaction at a time
  std::unique_ptr<sqlite::Connection> db_;
  const CommandOutboxOptions options_;
  const Clock clock_;
  CommandPublisher publish_;
  std::atomic<std::int64_t> last_report_seq_{0};
  std::mutex listener_mu_;
  std::function<void()> listener_;  // guarded by listener_mu_

  // Presence and wake-ups of the delivery thread.
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool wake_ = false;                                   // guarded by wake_mu_
  bool stopping_ = false;                               // guarded by wake_mu_
  std::map<std::string, std::int64_t> last_seen_;       // guarded by wake_mu_
  std::set<std::string> waiting_;                       // guarded by wake_mu_: devices with SENT commands
  std::thread thread_;

  std::map<int, Counter*> transitions_;
  std::map<std::string, Counter*> rejected_;
  std::mutex told_mu_;
  std::set<std::string> told_;  // guarded by told_mu_: reasons logged at warn already
  Counter& publish_failures_;
  Gauge& open_sent_;
  Gauge& open_delivered_;
  Gauge& reports_pending_;
};

}  // namespace strata::edge
