// The Database both backends return, written once: the backend's shared context and the
// three stores built on it (NewDeviceStore/NewEdgeStore/NewTelemetryStore, found in the
// context's namespace). A backend adds Ping() and its name.
#pragma once

#include <memory>
#include <utility>

#include "storage/store.h"

namespace strata::storage {

template <typename Context>
class BackendDatabase : public Database {
 public:
  explicit BackendDatabase(std::unique_ptr<Context> ctx)
      : ctx_(std::move(ctx)),
        devices_(NewDeviceStore(*ctx_)),
        edges_(NewEdgeStore(*ctx_)),
        telemetry_(NewTelemetryStore(*ctx_)) {}

  DeviceStore& Devices() final { return *devices_; }
  EdgeStore& Edges() final { return *edges_; }
  TelemetryStore& Telemetry() final { return *telemetry_; }

 protected:
  Context& context() { return *ctx_; }

 private:
  // Declared first: the stores hold references to it.
  const std::unique_ptr<Context> ctx_;
  const std::unique_ptr<DeviceStore> devices_;
  const std::unique_ptr<EdgeStore> edges_;
  const std::unique_ptr<TelemetryStore> telemetry_;
};

}  // namespace strata::storage
