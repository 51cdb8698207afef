// The Database both backends return, written once: the backend's shared context and the
// stores built on it (NewDeviceStore/NewEdgeStore/NewTelemetryStore/NewSqlRunner, found in
// the context's namespace; the command and twin stores, written once, on the backend's SqlRunner). A
// backend adds Ping() and its name.
#pragma once

#include <memory>
#include <utility>

#include "storage/sql_tx.h"
#include "storage/store.h"

namespace strata::storage {

// The command store (commands.cpp), the same on every backend's runner.
std::unique_ptr<CommandStore> NewCommandStore(SqlRunner& runner);
// The twin store (twins.cpp), likewise.
std::unique_ptr<TwinStore> NewTwinStore(SqlRunner& runner);
// The edge settings store (edge_settings.cpp), likewise.
std::unique_ptr<EdgeSettingsStore> NewEdgeSettingsStore(SqlRunner& runner);
// The rule and alarm stores (rules_alarms.cpp), likewise.
std::unique_ptr<RuleStore> NewRuleStore(SqlRunner& runner);
std::unique_ptr<AlarmStore> NewAlarmStore(SqlRunner& runner);

template <typename Context>
class BackendDatabase : public Database {
 public:
  explicit BackendDatabase(std::unique_ptr<Context> ctx)
      : ctx_(std::move(ctx)),
        devices_(NewDeviceStore(*ctx_)),
        edges_(NewEdgeStore(*ctx_)),
        telemetry_(NewTelemetryStore(*ctx_)),
        runner_(NewSqlRunner(*ctx_)),
        commands_(NewCommandStore(*runner_)),
        twins_(NewTwinStore(*runner_)),
        edge_settings_(NewEdgeSettingsStore(*runner_)),
        rules_(NewRuleStore(*runner_)),
        alarms_(NewAlarmStore(*runner_)) {}

  DeviceStore& Devices() final { return *devices_; }
  EdgeStore& Edges() final { return *edges_; }
  TelemetryStore& Telemetry() final { return *telemetry_; }
  CommandStore& Commands() final { return *commands_; }
  TwinStore& Twins() final { return *twins_; }
  EdgeSettingsStore& Settings() final { return *edge_settings_; }
  RuleStore& Rules() final { return *rules_; }
  AlarmStore& Alarms() final { return *alarms_; }

 protected:
  Context& context() { return *ctx_; }

 private:
  // Declared first: the stores hold references to it.
  const std::unique_ptr<Context> ctx_;
  const std::unique_ptr<DeviceStore> devices_;
  const std::unique_ptr<EdgeStore> edges_;
  const std::unique_ptr<TelemetryStore> telemetry_;
  const std::unique_ptr<SqlRunner> runner_;
  const std::unique_ptr<CommandStore> commands_;
  const std::unique_ptr<TwinStore> twins_;
  const std::unique_ptr<EdgeSettingsStore> edge_settings_;
  const std::unique_ptr<RuleStore> rules_;
  const std::unique_ptr<AlarmStore> alarms_;
};

}  // namespace strata::storage
