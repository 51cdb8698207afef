// Device twins at the edge: desired properties down to the devices, reported ones up to the
// cloud.
//
// Desired: each device's desired document comes in the config revision (EdgeDevice
// desired_json, desired_version), so it is on disk, switched to atomically and kept through
// reboots like the rest of the revision. After every applied revision (and at start) the
// agent hands the devices to SetDesired; the publisher thread then publishes, retained at
// QoS 1, {"version":N,"desired":{...}} on {prefix}/{device_id}/desired for every device whose
// document changed, and for every device again whenever the broker connection is new (the
// broker may have lost its retained messages). A device gets its document when it subscribes
// (the retained message) and whenever it changes; never a delta. A device whose desired
// document was never set (version 0) gets nothing; one that leaves the revision has its
// retained document cleared.
//
// Reported: a device publishes a JSON object on {prefix}/{device_id}/reported; it is merged
// (a JSON merge patch, RFC 7396: null removes a key) into the device's reported document,
// which is kept in twins.db with a seq that every change raises. The uplink sends each
// device's newest document until the cloud acks its seq; reports made while the cloud is away
// collapse into one document per device. A report that is not a JSON object, is larger than
// 32 KiB, would make the document larger than 64 KiB, comes from a device the agent does not
// accept (--unknown-devices=reject) or from one device too many (max_devices), or was
// published retained (replayed from the broker's store, it may be stale) is refused, counted
// and logged once per reason; the device's document stays as it was. A device that leaves the
// revision has its document forgotten once the cloud has it.
//
// Seqs are at least the clock in microseconds, so that an edge whose twins.db was lost (or
// replaced) still sends seqs above those the cloud kept from it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
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

inline constexpr std::size_t kMaxReportedMessageBytes = 32 * 1024;
inline constexpr std::size_t kMaxTwinDocumentBytes = 64 * 1024;

struct TwinsOptions {
  std::string path;  // the SQLite file (twins.db)
  std::string topic_prefix = "v1/devices";
  sqlite::Synchronous synchronous = sqlite::Synchronous::kFull;
  // Most devices with a reported document.
  std::size_t max_devices = 100000;
  // Set: only devices it accepts may report (the agent's --unknown-devices=reject).
  std::function<bool(const std::string& device_id)> accept_device;
};

// Publishes each (topic, payload) retained at QoS 1 and returns once the broker acknowledged
// them: one status per message, in order.
using RetainedPublisher =
    std::function<std::vector<absl::Status>(const std::vector<std::pair<std::string, std::string>>& messages)>;

class Twins {
 public:
  static absl::StatusOr<std::unique_ptr<Twins>> Open(TwinsOptions options, MetricsRegistry& metrics, Clock clock);
  ~Twins();  // Stop()
  Twins(const Twins&) = delete;
  Twins& operator=(const Twins&) = delete;

  void Start(RetainedPublisher publish);
  void Stop();

  // The devices of the revision the agent runs (at start, and after every applied revision).
  void SetDesired(const v1::EdgeConfig& config);
  // Ingest: the broker connection is new; every desired document is published again.
  void BrokerConnected();
  // Ingest: a message on a reported topic (`retained`: a stored retained message).
  void OnReported(const std::string& device_id, std::string_view payload, bool retained = false);

  // The uplink: documents not yet acknowledged with a seq above `after`, oldest first.
  absl::StatusOr<std::vector<std::pair<std::int64_t, v1::TwinReported>>> ReportsAfter(std::int64_t after,
                                                                                      std::size_t max);
  std::int64_t LastReportSeq() const { return last_seq_.load(); }
  void SetReportListener(std::function<void()> listener);
  void Acked(const v1::TwinReportedAck& ack);

 private:
  Twins(std::unique_ptr<sqlite::Connection> db, TwinsOptions options, MetricsRegistry& metrics, Clock clock);
  void Loop();
  void Reject(const char* reason, const std::string& detail);

  std::mutex mu_;  // the connection
  std::unique_ptr<sqlite::Connection> db_;
  const TwinsOptions options_;
  const Clock clock_;
  std::atomic<std::int64_t> last_seq_{0};
  std::int64_t rows_ = 0;     // guarded by mu_: devices with a document
  std::int64_t pending_ = 0;  // guarded by mu_: of them, not acknowledged by the cloud
  std::set<std::string> published_;  // guarded by desired_mu_: devices with a retained document (twins.db)
  std::mutex listener_mu_;
  std::function<void()> listener_;  // guarded by listener_mu_

  // Desired documents and what is left to publish.
  std::mutex desired_mu_;
  std::condition_variable desired_cv_;
  std::map<std::string, std::pair<std::int64_t, std::string>> desired_;  // device -> (version, payload)
  // guarded by desired_mu_: devices whose document (or, when not in desired_, the clearing
  // of it) is to be published
  std::set<std::string> to_publish_;
  bool stopping_ = false;  // guarded by desired_mu_
  RetainedPublisher publish_;
  std::thread thread_;

  std::map<std::string, Counter*> reported_;  // by outcome
  std::mutex told_mu_;
  std::set<std::string> told_;  // guarded by told_mu_
  Counter& store_failures_;
  Counter& desired_published_;
  Counter& publish_failures_;
  Gauge& reported_pending_;
};

// OK when every device's desired_json is a JSON object of at most kMaxTwinDocumentBytes
// (part of validating a revision).
absl::Status ValidateDesired(const v1::EdgeDevice& device);

}  // namespace strata::edge
