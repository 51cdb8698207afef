#include "services/registry_service.h"

#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <strata/telemetry/json.h>

#include "services/grpc_status.h"
#include "services/request_context.h"
#include "services/page_token.h"
#include "services/request_limits.h"
#include "strata/clock.h"
#include "strata/edge_settings.h"
#include "strata/ids.h"

namespace strata::services {
namespace {


absl::Status ValidateDeviceFields(const v1::Device& d) {
  if (auto s = CheckLength("name", d.name(), kMaxNameBytes); !s.ok()) return s;
  if (auto s = CheckLength("type", d.type(), kMaxNameBytes); !s.ok()) return s;
  if (auto s = CheckStringMap("labels", d.labels(), kMaxLabelBytes); !s.ok()) return s;
  return CheckStringMap("attributes", d.attributes(), kMaxAttributeBytes);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseLabelFilter(std::string_view filter) {
  std::vector<std::pair<std::string, std::string>> out;
  if (filter.empty()) return out;
  for (absl::string_view t : absl::StrSplit(absl::string_view(filter.data(), filter.size()), ',')) {
    const std::string_view term(t.data(), t.size());
    auto eq = term.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError("label_filter must be a comma-separated list of key=value, got '" +
                                        std::string(term) + "'");
    }
    out.emplace_back(std::string(term.substr(0, eq)), std::string(term.substr(eq + 1)));
  }
  return out;
}

// Cuts a list read with one extra row down to the page and sets the next-page token.
template <typename T, typename IdFn>
std::string TrimPage(std::vector<T>& rows, int page_size, IdFn id) {
  if (static_cast<int>(rows.size()) <= page_size) return {};
  rows.resize(page_size);
  return EncodeIdToken(id(rows.back()));
}

// An open session whose edge has not been heard from for this long (more than three of its
// 10 s heartbeats) is shown disconnected: the cloud that held it may have died.
constexpr std::int64_t kConnectedWithinMs = 35000;

void ShowConnection(v1::Edge& e) {
  if (e.connected() && NowMs() - e.last_seen_at() > kConnectedWithinMs) e.set_connected(false);
}

}  // namespace

grpc::Status RegistryService::UpdateEdgeSettings(grpc::ServerContext* context,
                                                 const v1::UpdateEdgeSettingsRequest* req, v1::Edge* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("edge_id", req->edge_id()); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateEdgeSettings(req->settings()); !s.ok()) return ToGrpc(s);
  if (auto s = db_.Settings().SetEdgeSettings(caller->tenant, req->edge_id(), req->settings()); !s.ok()) {
    return ToGrpc(s);
  }
  auto edge = db_.Edges().GetEdge(caller->tenant, req->edge_id());
  if (!edge.ok()) return ToGrpc(edge.status());
  *out = *std::move(edge);
  ShowConnection(*out);
  return grpc::Status::OK;
}

RegistryService::RegistryService(storage::Database& db, MetricsRegistry& metrics)
    : db_(db),
      desired_updates_(metrics.GetCounter("strata_cloud_twin_desired_updates_total",
                                          "Desired twin updates through the API, by result", {{"result", "applied"}})),
      desired_conflicts_(metrics.GetCounter("strata_cloud_twin_desired_updates_total",
                                            "Desired twin updates through the API, by result",
                                            {{"result", "version_conflict"}})) {}

grpc::Status RegistryService::GetDeviceTwin(grpc::ServerContext* context, const v1::GetDeviceTwinRequest* req,
                                            v1::DeviceTwin* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  auto twin = db_.Twins().GetTwin(caller->tenant, req->device_id());
  if (!twin.ok()) return ToGrpc(twin.status());
  *out = *std::move(twin);
  return grpc::Status::OK;
}

grpc::Status RegistryService::UpdateDesired(grpc::ServerContext* context, const v1::UpdateDesiredRequest* req,
                                            v1::DeviceTwin* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  if (!req->has_desired()) {
    return ToGrpc(absl::InvalidArgumentError("desired is required: a JSON object to merge into the desired document"));
  }
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(req->desired(), &text).ok()) {
    return ToGrpc(absl::InvalidArgumentError("desired does not convert to JSON"));
  }
  if (text.size() > storage::kMaxTwinDocumentBytes) {
    return ToGrpc(absl::InvalidArgumentError("desired is larger than " +
                                             std::to_string(storage::kMaxTwinDocumentBytes) + " bytes"));
  }
  // The request decoder already bounded its depth; parsed again the same way here.
  auto patch = telemetry::ParseBoundedJson(text);
  if (!patch.ok()) return ToGrpc(absl::InvalidArgumentError("desired: " + std::string(patch.status().message())));
  std::optional<std::int64_t> expected;
  if (req->has_expected_version()) expected = req->expected_version();
  auto twin = db_.Twins().UpdateDesired(caller->tenant, req->device_id(), *patch, expected);
  if (!twin.ok()) {
    if (twin.status().code() == absl::StatusCode::kAborted) desired_conflicts_.Inc();
    return ToGrpc(twin.status());
  }
  desired_updates_.Inc();
  *out = *std::move(twin);
  return grpc::Status::OK;
}

grpc::Status RegistryService::CreateDevice(grpc::ServerContext* context, const v1::CreateDeviceRequest* req, v1::Device* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device().device_id()); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateDeviceFields(req->device()); !s.ok()) return ToGrpc(s);
  // The gateway that serves the device (empty: none; it writes directly): the device is then
  // part of that edge's configuration.
  if (!req->device().edge_id().empty()) {
    if (auto s = ValidateId("edge_id", req->device().edge_id()); !s.ok()) return ToGrpc(s);
  }
  auto created = db_.Devices().CreateDevice(caller->tenant, req->device());
  if (!created.ok()) return ToGrpc(created.status());
  *out = *std::move(created);
  return grpc::Status::OK;
}

grpc::Status RegistryService::GetDevice(grpc::ServerContext* context, const v1::GetDeviceRequest* req, v1::Device* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  auto device = db_.Devices().GetDevice(caller->tenant, req->device_id());
  if (!device.ok()) return ToGrpc(device.status());
  *out = *std::move(device);
  return grpc::Status::OK;
}

grpc::Status RegistryService::ListDevices(grpc::ServerContext* context, const v1::ListDevicesRequest* req,
                                          v1::ListDevicesResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = CheckPageSize(req->page_size()); !s.ok()) return ToGrpc(s);
  storage::DeviceListQuery query;
  query.page_size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  if (!req->page_token().empty()) {
    auto after = DecodeIdToken(req->page_token());
    if (!after.ok()) return ToGrpc(after.status());
    query.after_device_id = *std::move(after);
  }
  auto labels = ParseLabelFilter(req->label_filter());
  if (!labels.ok()) return ToGrpc(labels.status());
  query.labels = *std::move(labels);
  auto rows = db_.Devices().ListDevices(caller->tenant, query);
  if (!rows.ok()) return ToGrpc(rows.status());
  out->set_next_page_token(TrimPage(*rows, query.page_size, [](const v1::Device& d) { return d.device_id(); }));
  for (auto& d : *rows) *out->add_devices() = std::move(d);
  return grpc::Status::OK;
}

grpc::Status RegistryService::UpdateDevice(grpc::ServerContext* context, const v1::UpdateDeviceRequest* req, v1::Device* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  const v1::Device& d = req->device();
  if (auto s = ValidateId("device.device_id", d.device_id()); !s.ok()) return ToGrpc(s);
  if (auto s = ValidateDeviceFields(d); !s.ok()) return ToGrpc(s);
  storage::DeviceUpdate fields;
  if (req->has_update_mask() && req->update_mask().paths_size() > 0) {
    for (const auto& path : req->update_mask().paths()) {
      if (path == "name") {
        fields.name = true;
      } else if (path == "type") {
        fields.type = true;
      } else if (path == "labels") {
        fields.labels = true;
      } else if (path == "attributes") {
        fields.attributes = true;
      } else if (path == "edge_id") {
        fields.edge_id = true;
      } else {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "update_mask: '" + path + "' is not one of name, type, labels, attributes, edge_id");
      }
    }
  } else {
    fields.name = !d.name().empty();
    fields.type = !d.type().empty();
    fields.labels = !d.labels().empty();
    fields.attributes = !d.attributes().empty();
    fields.edge_id = !d.edge_id().empty();
  }
  // Moving the device to another edge (or, with an explicit mask, to none): both edges get a
  // new config revision in the same transaction.
  if (fields.edge_id && !d.edge_id().empty()) {
    if (auto s = ValidateId("device.edge_id", d.edge_id()); !s.ok()) return ToGrpc(s);
  }
  auto updated = db_.Devices().UpdateDevice(caller->tenant, d, fields);
  if (!updated.ok()) return ToGrpc(updated.status());
  *out = *std::move(updated);
  return grpc::Status::OK;
}

grpc::Status RegistryService::DeleteDevice(grpc::ServerContext* context, const v1::DeleteDeviceRequest* req,
                                           v1::DeleteDeviceResponse*) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("device_id", req->device_id()); !s.ok()) return ToGrpc(s);
  return ToGrpc(db_.Devices().DeleteDevice(caller->tenant, req->device_id()));
}

grpc::Status RegistryService::CreateEdge(grpc::ServerContext* context, const v1::CreateEdgeRequest* req, v1::Edge* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  const v1::Edge& e = req->edge();
  if (auto s = ValidateId("edge_id", e.edge_id()); !s.ok()) return ToGrpc(s);
  if (auto s = CheckLength("name", e.name(), kMaxNameBytes); !s.ok()) return ToGrpc(s);
  if (auto s = CheckStringMap("labels", e.labels(), kMaxLabelBytes); !s.ok()) return ToGrpc(s);
  auto created = db_.Edges().CreateEdge(caller->tenant, e);
  if (!created.ok()) return ToGrpc(created.status());
  *out = *std::move(created);
  return grpc::Status::OK;
}

grpc::Status RegistryService::GetEdge(grpc::ServerContext* context, const v1::GetEdgeRequest* req, v1::Edge* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = ValidateId("edge_id", req->edge_id()); !s.ok()) return ToGrpc(s);
  auto edge = db_.Edges().GetEdge(caller->tenant, req->edge_id());
  if (!edge.ok()) return ToGrpc(edge.status());
  ShowConnection(*edge);
  *out = *std::move(edge);
  return grpc::Status::OK;
}

grpc::Status RegistryService::ListEdges(grpc::ServerContext* context, const v1::ListEdgesRequest* req,
                                        v1::ListEdgesResponse* out) {
  auto caller = ResolveCaller(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto s = CheckPageSize(req->page_size()); !s.ok()) return ToGrpc(s);
  const int page_size = req->page_size() == 0 ? kDefaultPageSize : req->page_size();
  std::string after;
  if (!req->page_token().empty()) {
    auto decoded = DecodeIdToken(req->page_token());
    if (!decoded.ok()) return ToGrpc(decoded.status());
    after = *std::move(decoded);
  }
  auto rows = db_.Edges().ListEdges(caller->tenant, page_size, after);
  if (!rows.ok()) return ToGrpc(rows.status());
  out->set_next_page_token(TrimPage(*rows, page_size, [](const v1::Edge& e) { return e.edge_id(); }));
  for (auto& e : *rows) {
    ShowConnection(e);
    *out->add_edges() = std::move(e);
  }
  return grpc::Status::OK;
}

}  // namespace strata::services
