// The edge's configuration: the last config revision it applied (today the devices it
// serves), kept in its own SQLite file (config.db in the data directory) so that the agent
// boots from it with the cloud unreachable and keeps serving its devices indefinitely.
//
// Applying a revision (Apply): it is validated as a whole; then staged (written on its own);
// then switched to in one transaction (the applied revision replaced by the staged one, the
// stage cleared); only then does the running agent see it (the DeviceDirectory) and is the
// ConfigAck returned for the uplink to send. A revision that fails validation is answered
// with applied = false and the reason, and the agent keeps the revision it runs. A process
// killed at any step restarts on exactly the old or exactly the new revision: a stage left
// behind is discarded at open (it was never acknowledged, so the cloud sends it again).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <absl/status/statusor.h>

#include <strata/clock.h>
#include <strata/metrics.h>
#include <strata/sqlite/sqlite.h>

#include "agent/ingest.h"
#include "strata/v1/edgesync.pb.h"

namespace strata::edge {

struct AppliedConfig {
  std::uint64_t revision = 0;  // 0: none applied yet
  std::int64_t applied_at = 0;  // ms since the epoch
  std::size_t devices = 0;
};

struct ConfigStoreOptions {
  std::string path;  // the SQLite file
  // Fault injection for tests: exit abruptly (as a crash would) right after this step of
  // applying a revision: "staged" or "switched" (before the ack is sent). Empty: never.
  std::string crash_after_step;
  // Called with the revision the agent runs: at open, and after each revision applied.
  std::function<void(const v1::EdgeConfig&)> on_applied;
};

class ConfigStore {
 public:
  // Opens (creating) the store, discards an unfinished stage, and fills `directory` with the
  // applied revision's devices.
  static absl::StatusOr<std::unique_ptr<ConfigStore>> Open(ConfigStoreOptions options, DeviceDirectory& directory,
                                                           MetricsRegistry& metrics, Clock clock);

  // Validates, stages and switches to `config`; the answer for the cloud. The revision the
  // agent runs changes nothing and is answered applied (the cloud's ack was lost); any other
  // is applied, a lower one too (the cloud is the source of truth: its database was restored
  // to an earlier state). An error of this store (disk full, I/O) is not an answer: the caller
  // sends nothing, and the cloud sends the revision again on the next connection.
  // `carries_desired` false (a cloud below EdgeSync version 4): each device keeps the desired
  // document it has in the running revision; `carries_settings` false (below 5): the managed
  // settings of the running revision are kept; `carries_rules` false (below 6): its rules.
  absl::StatusOr<v1::ConfigAck> Apply(const v1::EdgeConfig& config, bool carries_desired = true,
                                      bool carries_settings = true, bool carries_rules = true);
  AppliedConfig Applied() const;

 private:
  ConfigStore(std::unique_ptr<sqlite::Connection> db, ConfigStoreOptions options, DeviceDirectory& directory,
              MetricsRegistry& metrics, Clock clock);
  absl::Status Load();
  // Returns the time it was applied.
  absl::StatusOr<std::int64_t> StageAndSwitch(const v1::EdgeConfig& config);

  std::mutex apply_mu_;                      // one Apply at a time
  std::unique_ptr<sqlite::Connection> db_;  // used under apply_mu_
  ConfigStoreOptions options_;
  DeviceDirectory& directory_;
  Clock clock_;
  mutable std::mutex mu_;  // only for applied_: /status and /metrics never wait for a commit
  AppliedConfig applied_;  // guarded by mu_
  v1::EdgeConfig running_;  // guarded by apply_mu_: the revision the agent runs
  Counter& applied_total_;
  Counter& rejected_total_;
};

// OK when the revision can be applied: a revision of 1 to 2^63-1, and devices with valid,
// distinct ids and desired documents that are JSON objects of at most 64 KiB, settings in
// the ranges of the agent's flags, and EDGE rules this edge's engine compiles.
absl::Status ValidateEdgeConfig(const v1::EdgeConfig& config);

}  // namespace strata::edge
