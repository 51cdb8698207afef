// strata.v1.DeviceRegistry: validates requests and maps them onto the device, edge and twin
// stores.
// Stateless: everything lives in the database, so instances scale out.
#pragma once

#include <strata/metrics.h>

#include "storage/store.h"
#include "strata/v1/registry.grpc.pb.h"

namespace strata::services {

class RegistryService final : public v1::DeviceRegistry::Service {
 public:
  RegistryService(storage::Database& db, MetricsRegistry& metrics);

  grpc::Status CreateDevice(grpc::ServerContext*, const v1::CreateDeviceRequest*, v1::Device*) override;
  grpc::Status GetDevice(grpc::ServerContext*, const v1::GetDeviceRequest*, v1::Device*) override;
  grpc::Status ListDevices(grpc::ServerContext*, const v1::ListDevicesRequest*, v1::ListDevicesResponse*) override;
  grpc::Status UpdateDevice(grpc::ServerContext*, const v1::UpdateDeviceRequest*, v1::Device*) override;
  grpc::Status DeleteDevice(grpc::ServerContext*, const v1::DeleteDeviceRequest*, v1::DeleteDeviceResponse*) override;
  grpc::Status GetDeviceTwin(grpc::ServerContext*, const v1::GetDeviceTwinRequest*, v1::DeviceTwin*) override;
  grpc::Status UpdateDesired(grpc::ServerContext*, const v1::UpdateDesiredRequest*, v1::DeviceTwin*) override;
  grpc::Status CreateEdge(grpc::ServerContext*, const v1::CreateEdgeRequest*, v1::Edge*) override;
  grpc::Status GetEdge(grpc::ServerContext*, const v1::GetEdgeRequest*, v1::Edge*) override;
  grpc::Status ListEdges(grpc::ServerContext*, const v1::ListEdgesRequest*, v1::ListEdgesResponse*) override;
  grpc::Status UpdateEdgeSettings(grpc::ServerContext*, const v1::UpdateEdgeSettingsRequest*, v1::Edge*) override;

 private:
  storage::Database& db_;
  Counter& desired_updates_;
  Counter& desired_conflicts_;
};

}  // namespace strata::services
