#include "services/commands_service.h"


#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include "services/grpc_status.h"
#include "services/page_token.h"
#include "services/request_context.h"
#include "services/request_limits.h"
#include "strata/ids.h"

namespace strata::services {

absl::Status ValidateCommandName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  if (name.size() > kMaxCommandNameBytes) {
    return absl::InvalidArgumentError("name is longer than " + std::to_string(kMaxCommandNameBytes) + " bytes");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == ':' || c == '-';
    if (!ok) return absl::InvalidArgumentError("name may hold only letters, digits and _ . : -");
  }
  return absl::OkStatus();
}

CommandsService::CommandsService(storage::Database& db, MetricsRegistry& metrics, Clock clock,
                                 CommandsOptions options)
    : db_(db),
      clock_(std::move(clock)),
      options_(std::move(options)),
      sent_total_(metrics.GetCounter("strata_cloud_commands_queued_total", "Commands queued through the API")),
      duplicates_total_(metrics.GetCounter("strata_cloud_commands_idempotent_repeats_total",
                                           "SendCommand calls answered with the command their idempotency key made")),
      cancelled_total_(metrics.GetCounter("strata_cloud_commands_cancelled_total", "Commands cancelled through the API")),
      expired_total_(metrics.GetCounter("strata_cloud_commands_expired_total",
                                        "QUEUED commands that expired before reaching their edge")) {
  if (options_.expiry_interval.count() > 0) expiry_ = std::thread([this] { ExpiryLoop(); });
}

CommandsService::~CommandsService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (expiry_.joinable()) expiry_.join();
}

void CommandsService::ExpiryLoop() {
  bool told = false;  // a failure is logged once until a pass succeeds again
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    // A batch at a time: a backlog of a million ends over a few passes, none holding a long
    // transaction.
    auto n = db_.Commands().ExpireCommands(clock_(), options_.dispatched_grace.count(), 5000);
    if (n.ok()) {
      told = false;
      if (*n > 0) {
        expired_total_.Inc(static_cast<std::uint64_t>(*n));
        spdlog::info("commands: {} queued command(s) expired before reaching their edge", *n);
      }
    } else if (!told) {
      told = true;
      spdlog::warn("commands: expiry pass failed: {}", n.status().ToString());
    }
    lock.lock();
    cv_.wait_for(lock, options_.expiry_interval, [this] { return stopping_; });
  }
}

grpc::Status CommandsService::SendCommand(grpc::ServerContext* context, const v1::SendCommandRequest* req,
                                          v1::Command* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateCommandName(req->name()); !s.ok()) return ToGrpc(s);
  if (auto s = CheckLength("idempotency_key", req->idempotency_key(), kMaxIdempotencyKeyBytes); !s.ok()) {
    return ToGrpc(s);
  }
  // Measured as the JSON the edge gets (which can be several times the protobuf's size:
  // numbers, escaped characters), so that what the cloud takes the edge takes too.
  std::string params_json;
  if (!google::protobuf::util::MessageToJsonString(req->params(), &params_json).ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "params does not convert to JSON");
  }
  if (params_json.size() > kMaxCommandParamsBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "params is " + std::to_string(params_json.size()) +
                                                                " bytes as JSON, larger than " +
                                                                std::to_string(kMaxCommandParamsBytes));
  }
  const std::int64_t now = clock_();
  v1::Command c;
  c.set_command_id(RandomId());
  c.set_device_id(req->device_id());
  c.set_name(req->name());
  *c.mutable_params() = req->params();
  c.set_idempotency_key(req->idempotency_key());
  c.set_timeout_ms(req->timeout_ms() == 0 ? kDefaultCommandTimeoutMs : req->timeout_ms());
  if (c.timeout_ms() < 1 || c.timeout_ms() > kMaxCommandTimeoutMs) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "timeout_ms must be 1 to " + std::to_string(kMaxCommandTimeoutMs) + " (0: 30000)");
  }
  c.set_expires_at(req->expires_at() == 0 ? now + kDefaultCommandExpiryMs : req->expires_at());
  if (c.expires_at() <= now || c.expires_at() > now + kMaxCommandExpiryMs) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "expires_at must be in the future and at most 30 days ahead (ms since the epoch; 0: in 24 h)");
  }
  auto created = db_.Commands().CreateCommand(caller->tenant, c);
  if (!created.ok()) return ToGrpc(created.status());
  if (created->created) {
    sent_total_.Inc();
    if (options_.on_queued) options_.on_queued(caller->tenant, created->command.edge_id());
  } else {
    duplicates_total_.Inc();
  }
  *out = std::move(created->command);
  return grpc::Status::OK;
}

grpc::Status CommandsService::GetCommand(grpc::ServerContext* context, const v1::GetCommandRequest* req,
                                         v1::Command* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("command_id", req->command_id()); !s.ok()) return ToGrpc(s);
  auto c = db_.Commands().GetCommand(caller->tenant, req->command_id());
  if (!c.ok()) return ToGrpc(c.status());
  *out = *std::move(c);
  return grpc::Status::OK;
}

grpc::Status CommandsService::ListCommands(grpc::ServerContext* context, const v1::ListCommandsRequest* req,
                                           v1::ListCommandsResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  if (auto s = CheckPageSize(req->page_size()); !s.ok()) return ToGrpc(s);
  if (!v1::CommandState_IsValid(req->state())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "state is not a CommandState");
  }
  storage::CommandListQuery query;
  query.device_id = req->device_id();
  query.state = req->state();
  query.page_size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  if (!req->page_token().empty()) {
    // The same shape as a telemetry cursor: a time and an id.
    auto cursor = DecodeTelemetryToken(req->page_token());
    if (!cursor.ok()) return ToGrpc(cursor.status());
    query.before = storage::CommandCursor{cursor->ts, cursor->key};
  }
  auto rows = db_.Commands().ListCommands(caller->tenant, query);
  if (!rows.ok()) return ToGrpc(rows.status());
  if (static_cast<int>(rows->size()) > query.page_size) {
    rows->resize(query.page_size);
    out->set_next_page_token(EncodeTelemetryToken({rows->back().created_at(), rows->back().command_id()}));
  }
  for (auto& c : *rows) *out->add_commands() = std::move(c);
  return grpc::Status::OK;
}

grpc::Status CommandsService::CancelCommand(grpc::ServerContext* context, const v1::CancelCommandRequest* req,
                                            v1::Command* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("command_id", req->command_id()); !s.ok()) return ToGrpc(s);
  auto c = db_.Commands().CancelCommand(caller->tenant, req->command_id());
  if (!c.ok()) return ToGrpc(c.status());
  cancelled_total_.Inc();
  if (options_.on_queued) options_.on_queued(caller->tenant, c->edge_id());
  *out = *std::move(c);
  return grpc::Status::OK;
}

}  // namespace strata::services
