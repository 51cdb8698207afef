// strata-cloud: the cloud side of Strata in one binary. --services picks which gRPC services
// this process runs (all of them by default); the REST gateway transcodes to the services
// that run here over an in-process channel.
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <strata/channel.h>
#include <strata/clock.h>
#include <strata/config.h>
#include <strata/logging.h>
#include <strata/signals.h>
#include <strata/metrics.h>

#include "grpc/health/v1/health.pb.h"

#include "gateway/rest_gateway.h"
#include "services/commands_service.h"
#include "services/rule_runner.h"
#include "services/rules_service.h"
#include "services/edge_hub.h"
#include "services/registry_service.h"
#include "services/retention.h"
#include "services/telemetry_service.h"
#include "storage/store.h"

namespace {

struct Flags {
  std::string services = "all";
  std::string database;
  std::string data_dir = "strata-data";
  std::string grpc_listen = "127.0.0.1:7000";
  std::string http_listen = "127.0.0.1:8080";
  int db_pool_size = 8;
  int http_threads = 2;
  std::string log_level = "info";
  std::string log_format = "text";
  std::uint64_t crash_after_commits = 0;
  int hello_timeout_ms = 10000;
  int max_edge_streams = 256;
  int retention_days = 0;
  bool cloud_rules = true;
};

// The services strata-cloud can run: the name --services takes and the gRPC service's full
// name (what health checks, reflection and the REST gateway know it by).
struct ServiceName {
  const char* flag;
  const char* grpc;
};
constexpr ServiceName kServices[] = {
    {"registry", "strata.v1.DeviceRegistry"},
    {"telemetry", "strata.v1.Telemetry"},
    {"edgehub", "strata.v1.EdgeSync"},
    {"commands", "strata.v1.Commands"},
    {"rules", "strata.v1.Rules"},
    {"alarms", "strata.v1.Alarms"},
};

std::set<std::string> ParseServices(const std::string& s) {
  std::set<std::string> known;
  for (const auto& service : kServices) known.insert(service.flag);
  if (s == "all") return known;
  std::set<std::string> out;
  for (absl::string_view name : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    if (!known.count(std::string(name))) {
      throw CLI::ValidationError("--services", "unknown service '" + std::string(name) + "' (all, or a list of " +
                                                   absl::StrJoin(known, ", ") + ")");
    }
    out.insert(std::string(name));
  }
  if (out.empty()) throw CLI::ValidationError("--services", "no service selected");
  return out;
}

int Run(const Flags& flags) {
  const auto services = ParseServices(flags.services);
  const sigset_t signals = strata::BlockShutdownSignals();

  std::string url = flags.database;
  if (url.empty()) {
    std::filesystem::create_directories(flags.data_dir);
    url = "sqlite://" + (std::filesystem::path(flags.data_dir) / "strata.db").string();
  }
  strata::Clock clock = strata::NowMs;
  auto db = strata::storage::OpenDatabase({url, flags.db_pool_size, clock});
  if (!db.ok()) {
    spdlog::error("cannot open database: {}", db.status().ToString());
    return 2;
  }
  spdlog::info("database: {} ({})", (*db)->Backend(), (*db)->Backend() == "sqlite" ? url : "postgresql");

  strata::MetricsRegistry metrics;
  strata::services::RegistryService registry(**db, metrics);
  // The cloud rules evaluate what this process stores (Telemetry.Write, the edge hub's
  // batches); one process should take the writes while rules run on live data (the runner's
  // state of a rule is its own, docs/rules.md).
  const bool run_rules = flags.cloud_rules && (services.count("telemetry") || services.count("edgehub"));
  strata::services::RuleRunner rule_runner(**db, metrics, clock);
  strata::services::WrittenHook on_written;
  if (run_rules) {
    on_written = [&rule_runner](const std::string& tenant, const std::string& device,
                                const std::vector<strata::storage::Point>& points) {
      rule_runner.Submit(tenant, device, points);
    };
  }
  strata::services::TelemetryService telemetry(**db, metrics, clock, on_written);
  strata::services::EdgeHubOptions hub_options;
  hub_options.crash_after_commits = flags.crash_after_commits;
  hub_options.hello_timeout = std::chrono::milliseconds(flags.hello_timeout_ms);
  hub_options.max_streams = static_cast<std::size_t>(flags.max_edge_streams);
  if (run_rules) {
    hub_options.on_stored = [&rule_runner](const std::string& tenant,
                                           std::span<const strata::v1::TelemetryBatch* const> batches) {
      rule_runner.Submit(tenant, batches);
    };
  }
  strata::services::EdgeHub hub(**db, metrics, clock, hub_options);
  strata::services::CommandsOptions commands_options;
  if (!services.count("commands")) commands_options.expiry_interval = std::chrono::milliseconds(0);
  // With the hub in this process, a queued command goes to its edge at once; otherwise the
  // hub that serves the edge finds it at its next poll (kConfigPollInterval).
  if (services.count("edgehub")) {
    commands_options.on_queued = [&hub](const std::string& tenant, const std::string& edge_id) {
      hub.NotifyCommands(tenant, edge_id);
    };
  }
  strata::services::CommandsService commands(**db, metrics, clock, commands_options);
  strata::services::RulesService rules(**db, metrics, clock);
  strata::services::AlarmsService alarms(**db, metrics, clock);
  // Telemetry retention runs where telemetry is served (every replica may: it is idempotent).
  strata::services::RetentionOptions retention_options;
  if (services.count("telemetry")) retention_options.period = std::chrono::hours(24 * flags.retention_days);
  strata::services::Retention retention(**db, metrics, clock, retention_options);

  grpc::EnableDefaultHealthCheckService(true);
  // Reflection lets grpcurl and grpc_cli call the API without the .proto files. gRPC's health
  // service has no protobuf descriptor of its own; linking ours lets reflection describe it.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::ServerBuilder builder;
  // gRPC turns SO_REUSEPORT on by default: a second strata-cloud on the same address would
  // then share the port and take edges at random. One process per address.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Edges ping their stream (strata::MakeChannel's keepalive); accept pings that often, or
  // gRPC would end their streams with "too many pings".
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(strata::kMinPingIntervalAccepted.count()));
  int grpc_port = 0;
  builder.AddListeningPort(flags.grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  const std::map<std::string, grpc::Service*> implementations = {
      {"registry", &registry}, {"telemetry", &telemetry}, {"edgehub", &hub}, {"commands", &commands},
      {"rules", &rules},       {"alarms", &alarms}};
  std::vector<std::string> served;
  for (const auto& service : kServices) {
    if (!services.count(service.flag)) continue;
    builder.RegisterService(implementations.at(service.flag));
    served.push_back(service.grpc);
  }
  if (run_rules) rule_runner.Start();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    spdlog::error("cannot listen for gRPC on {}: address in use or not available", flags.grpc_listen);
    return 2;
  }
  // Health answers per service name too (grpc_health_probe -service=strata.v1.Telemetry).
  for (const std::string& name : served) server->GetHealthCheckService()->SetServingStatus(name, true);

  const auto http = strata::ParseHostPort(flags.http_listen);
  strata::gateway::RestGatewayOptions gw_options;
  gw_options.host = http.host;
  gw_options.port = http.port;
  gw_options.threads = flags.http_threads;
  auto& database = **db;
  strata::gateway::HttpHooks hooks{
      [&metrics] { return metrics.Render(); }, [&database] { return database.Ping().ok(); },
      [&metrics](int http_status) {
        metrics
            .GetCounter("strata_cloud_rest_requests_rejected_total",
                        "REST requests refused by the gateway before any call (bad route, query or body)",
                        {{"code", std::to_string(http_status)}})
            .Inc();
      }};
  auto gateway = strata::gateway::RestGateway::Create(gw_options, server->InProcessChannel(grpc::ChannelArguments()),
                                                      served, hooks);
  if (!gateway.ok()) {
    spdlog::error("cannot start the REST gateway: {}", gateway.status().ToString());
    server->Shutdown();
    return 2;
  }
  const std::string grpc_host = flags.grpc_listen.substr(0, flags.grpc_listen.rfind(':'));
  spdlog::info("strata-cloud ready: services={} gRPC={}:{} REST=http://{}:{}", flags.services, grpc_host, grpc_port,
               http.host, (*gateway)->Port());

  const int sig = strata::WaitForShutdownSignal(signals);
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // Stop taking REST requests first (they call into gRPC), then let gRPC finish in-flight
  // calls for up to five seconds; stores are closed last, when `db` goes out of scope.
  (*gateway)->Shutdown();
  server->GetHealthCheckService()->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rule_runner.Stop();  // a last round: what the rules decided is written
  spdlog::info("strata-cloud stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata-cloud: Strata's cloud services (device registry, telemetry, edge hub) and REST gateway"};
  Flags flags;
  strata::UseYamlConfig(app);
  strata::AddFlag(app, "services", flags.services, "Services to run: all, or a comma-separated subset of registry,telemetry,edgehub,commands,rules,alarms");
  strata::AddFlag(app, "database", flags.database,
          "Database URL: sqlite://PATH or postgresql://USER@HOST:PORT/DB (default: sqlite under --data-dir)");
  strata::AddFlag(app, "data-dir", flags.data_dir, "Directory for the embedded database");
  strata::AddFlag(app, "grpc-listen", flags.grpc_listen, "gRPC listen address HOST:PORT (port 0 picks one)");
  strata::AddFlag(app, "http-listen", flags.http_listen, "REST/metrics listen address HOST:PORT (port 0 picks one)");
  strata::AddFlag(app, "db-pool-size", flags.db_pool_size, "PostgreSQL connection pool size")->check(CLI::Range(1, 256));
  strata::AddFlag(app, "http-threads", flags.http_threads, "Threads serving REST")->check(CLI::Range(1, 64));
  strata::AddFlag(app, "log-level", flags.log_level, "trace, debug, info, warn or error");
  strata::AddFlag(app, "log-format", flags.log_format, "text or json");
  strata::AddFlag(app, "fault-crash-after-commits", flags.crash_after_commits,
          "Testing only: exit abruptly after committing this many edge batches, before acking")
      ->group("Testing");
  strata::AddFlag(app, "hello-timeout-ms", flags.hello_timeout_ms,
                  "An EdgeSync stream that sends no Hello within this long is closed")
      ->check(CLI::Range(100, 600000));
  strata::AddFlag(app, "max-edge-streams", flags.max_edge_streams, "Most EdgeSync streams open at once")
      ->check(CLI::Range(1, 100000));
  strata::AddFlag(app, "cloud-rules", flags.cloud_rules,
                  "Evaluate the enabled CLOUD rules on the telemetry this process stores");
  strata::AddFlag(app, "retention-days", flags.retention_days,
                  "Delete telemetry older than this many days, hourly (0 keeps everything; latest values stay)")
      ->check(CLI::Range(0, 3650000));
  try {
    app.parse(argc, argv);
    strata::ConfigureLogging(flags.log_level, flags.log_format);
    return Run(flags);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "strata-cloud: " << e.what() << "\n";
    return 2;
  }
}
