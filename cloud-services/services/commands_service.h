// strata.v1.Commands: validates requests and maps them onto the command store; the edge hub
// carries the commands to the edges (edge_session.cpp). A background thread ends QUEUED
// commands whose expiry passed (EXPIRED); every replica may run it (it is idempotent).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <strata/clock.h>
#include <strata/metrics.h>

#include "storage/store.h"
#include "strata/v1/commands.grpc.pb.h"

namespace strata::services {

inline constexpr std::int64_t kDefaultCommandTimeoutMs = 30000;
inline constexpr std::int64_t kMaxCommandTimeoutMs = 24LL * 3600 * 1000;
inline constexpr std::int64_t kDefaultCommandExpiryMs = 24LL * 3600 * 1000;
inline constexpr std::int64_t kMaxCommandExpiryMs = 30LL * 24 * 3600 * 1000;
inline constexpr std::size_t kMaxCommandParamsBytes = 64 * 1024;
inline constexpr std::size_t kMaxCommandNameBytes = 128;
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 128;

struct CommandsOptions {
  // How often QUEUED commands are checked for expiry; 0: never (no thread).
  std::chrono::milliseconds expiry_interval{1000};
  // A QUEUED command an edge was handed but has not said it took: ended EXPIRED by the cloud
  // only this long after its expires_at (until then its edge may still report how it ended).
  std::chrono::milliseconds dispatched_grace{std::chrono::hours(1)};
  // Called after a command was queued for (tenant, edge): the edge hub of this process, if
  // it runs one, sends it at once instead of at its next poll.
  std::function<void(const std::string& tenant, const std::string& edge_id)> on_queued;
};

class CommandsService final : public v1::Commands::Service {
 public:
  CommandsService(storage::Database& db, MetricsRegistry& metrics, Clock clock, CommandsOptions options);
  ~CommandsService() override;  // stops and joins the expiry thread
  CommandsService(const CommandsService&) = delete;
  CommandsService& operator=(const CommandsService&) = delete;

  grpc::Status SendCommand(grpc::ServerContext*, const v1::SendCommandRequest*, v1::Command*) override;
  grpc::Status GetCommand(grpc::ServerContext*, const v1::GetCommandRequest*, v1::Command*) override;
  grpc::Status ListCommands(grpc::ServerContext*, const v1::ListCommandsRequest*,
                            v1::ListCommandsResponse*) override;
  grpc::Status CancelCommand(grpc::ServerContext*, const v1::CancelCommandRequest*, v1::Command*) override;

 private:
  void ExpiryLoop();

  storage::Database& db_;
  Clock clock_;
  CommandsOptions options_;
  Counter& sent_total_;
  Counter& duplicates_total_;
  Counter& cancelled_total_;
  Counter& expired_total_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread expiry_;
};

// OK when a command name is 1 to 128 bytes of [A-Za-z0-9_.:-].
absl::Status ValidateCommandName(std::string_view name);

}  // namespace strata::services
