// The uplink: one EdgeSync.Connect stream to the cloud, carrying the buffer's readings in
// batches and deleting them from the buffer when the cloud acknowledges them.
//
// On every (re)connect the cloud's Welcome says the highest seq it has stored; the uplink
// drops what is at or below it from the buffer and sends from there. Batches are bounded by
// count and by linger time, and at most `window` of them are unacknowledged at once. While the
// cloud is unreachable it retries with exponential backoff and jitter; ingest carries on
// into the buffer meanwhile.
//
// With protocol version 2 the cloud also sends config revisions down the stream: the reader
// hands each to `on_config` (which applies it durably) and the writer sends the answer. With
// version 3 it sends commands: the reader hands them to the command outbox, and the writer
// sends the outbox's reports (all that are unacknowledged, on every stream).
//
// Threads: Run() owns the stream's writes; a reader thread per connection takes what the
// cloud sends.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <absl/status/statusor.h>
#include <strata/metrics.h>
#include <strata/stop_signal.h>

#include "agent/buffer.h"
#include "agent/commands.h"
#include "agent/edge_rules.h"
#include "agent/twins.h"
#include "strata/v1/edgesync.pb.h"

namespace strata::edge {

struct UplinkOptions {
  std::string cloud_address;  // HOST:PORT
  std::string edge_id;
  std::size_t batch_max = 1000;
  std::chrono::milliseconds linger{20};
  std::size_t window = 8;
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{10000};
  std::chrono::milliseconds heartbeat{10000};
  // Applies a config revision and returns the answer for the cloud; called on the stream's
  // reader thread. Unset: the edge says protocol version 1 and gets no config.
  // An error (the revision could not be stored) sends no answer and ends the stream: the
  // cloud sends the revision again on the next connection.
  // It gets the stream's protocol version too (below 4 a revision carries no twins, below 5
  // no settings).
  std::function<absl::StatusOr<v1::ConfigAck>(const v1::EdgeConfig&, std::uint32_t protocol_version)> on_config;
  // Takes the commands the cloud sends and reports their transitions (version 3, with
  // on_config set too). Unset: the edge speaks version 2 at most and gets no commands.
  CommandOutbox* commands = nullptr;
  // Sends the devices' reported documents and takes the cloud's acks (version 4, with
  // on_config and commands set too). Unset: the edge speaks version 3 at most.
  Twins* twins = nullptr;
  // Sends the edge rules' alarm transitions and takes the cloud's acks (version 6, with the
  // above set too). Unset: the edge speaks version 5 at most.
  EdgeRules* rules = nullptr;
};

// The highest EdgeSync version this edge speaks (with on_config, commands and twins set).
inline constexpr std::uint32_t kEdgeProtocolVersion = 6;
// The largest message the uplink takes from the cloud: above the cloud's largest config
// revision (services::kMaxConfigBytes, 16 MiB).
inline constexpr int kUplinkMaxReceiveBytes = 32 * 1024 * 1024;

class Uplink {
 public:
  Uplink(UplinkOptions options, Buffer& buffer, MetricsRegistry& metrics);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  void Start();
  // Closes the stream and joins the thread. Unacknowledged readings stay in the buffer.
  void Stop();

  bool Connected() const { return connected_.load(); }
  std::uint64_t CloudMark() const { return cloud_mark_.load(); }

  // The last time the cloud's mark was found above this buffer's last seq: the buffer was
  // lost or replaced after readings from it had reached the cloud.
  struct BufferLoss {
    std::uint64_t times = 0;        // since the agent started
    std::int64_t detected_at = 0;   // ms since the epoch
    std::uint64_t cloud_mark = 0;   // the cloud held readings up to this seq...
    std::uint64_t local_last_seq = 0;  // ...while this buffer had handed out seqs only to here
  };
  BufferLoss LastBufferLoss() const;
  // Readings the cloud refused (the telemetry model), and the last refusal it gave.
  std::uint64_t Refused() const { return refused_.load(); }
  std::string LastRefusal() const;
  // Why the last stream ended, as the cloud said (empty while none ended).
  std::string LastError() const;
  // Batching, changed while running (a config revision's settings): from the next batch.
  void SetBatching(std::size_t batch_max, std::chrono::milliseconds linger);
  std::size_t BatchMax() const { return batch_max_.load(); }
  std::chrono::milliseconds Linger() const { return std::chrono::milliseconds(linger_ms_.load()); }

  // The protocol version of the current (or last) stream; 0 before the first Welcome.
  std::uint32_t ProtocolVersion() const { return protocol_version_.load(); }

 private:
  void Run();
  // One connection's life; returns when the stream breaks or Stop() is called.
  void Session();

  UplinkOptions options_;
  Buffer& buffer_;
  std::thread thread_;
  StopSignal stop_;
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> cloud_mark_{0};
  mutable std::mutex mu_;
  void* active_context_ = nullptr;  // grpc::ClientContext* of the live stream; guarded by mu_
  BufferLoss buffer_loss_;          // guarded by mu_
  std::string last_refusal_;        // guarded by mu_
  std::string last_error_;          // guarded by mu_
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint32_t> protocol_version_{0};
  std::atomic<std::size_t> batch_max_;
  std::atomic<std::int64_t> linger_ms_;

  Counter& acked_total_;
  Counter& refused_total_;
  Counter& buffer_losses_;
  Counter& batches_sent_;
  Counter& connects_total_;
  Counter& ignored_messages_;
  Gauge& connected_gauge_;
};

}  // namespace strata::edge
