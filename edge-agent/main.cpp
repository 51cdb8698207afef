// strata-edge: the gateway daemon. Ingests MQTT from the local broker into a durable buffer
// and forwards it to the cloud over one EdgeSync stream; serves /healthz, /metrics and
// /status locally. `strata-edge status` prints the state of a running agent.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <ctime>
#include <iomanip>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <strata/clock.h>
#include <strata/config.h>
#include <strata/ids.h>
#include <strata/logging.h>
#include <strata/signals.h>
#include <strata/metrics.h>

#include "agent/buffer.h"
#include "agent/ingest.h"
#include "agent/config_store.h"
#include "agent/status_server.h"
#include "agent/uplink.h"

namespace {

struct Flags {
  std::string mqtt_url = "tcp://127.0.0.1:1883";
  std::string mqtt_client_id;
  std::string topic_prefix = "v1/devices";
  std::string cloud = "127.0.0.1:7000";
  std::string edge_id;
  std::string data_dir = "strata-edge-data";
  std::string http_listen = "127.0.0.1:9090";
  std::size_t max_payload_bytes = 64 * 1024;
  std::size_t max_keys = 1000;
  std::string unknown_devices = "register";
  std::uint64_t buffer_max_bytes = 256ull * 1024 * 1024;
  std::int64_t buffer_max_age = 7 * 24 * 3600;
  std::string buffer_full_policy = "drop-oldest";
  std::string buffer_sync = "full";
  std::size_t batch_max = 5000;
  int batch_linger_ms = 20;
  int commit_linger_ms = 5;
  std::size_t window = 8;
  std::size_t queue_capacity = 10000;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string crash_after_config_step;
  std::int64_t command_presence_window_ms = 120000;
  std::size_t command_max_open = 100000;
};

// The outbox's state for /status: commands held per state (lower-case names) and reports
// the cloud has not recorded yet.
nlohmann::json CommandsJson(const strata::edge::CommandOutbox::Stats& stats) {
  nlohmann::json by_state = nlohmann::json::object();
  std::int64_t open = 0;
  for (const auto& [state, n] : stats.by_state) {
    std::string name = strata::v1::CommandState_Name(static_cast<strata::v1::CommandState>(state));
    name = name.substr(std::string_view("COMMAND_STATE_").size());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    by_state[name] = n;
    if (state < strata::v1::COMMAND_STATE_SUCCEEDED) open += n;
  }
  return {{"open", open}, {"by_state", by_state}, {"reports_pending", stats.reports_pending}};
}

int Run(const Flags& f) {
  if (auto s = strata::ValidateId("--edge-id", f.edge_id); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 2;
  }
  const sigset_t signals = strata::BlockShutdownSignals();
  std::filesystem::create_directories(f.data_dir);

  strata::MetricsRegistry metrics;
  strata::Clock clock = strata::NowMs;
  strata::edge::BufferOptions bopts;
  bopts.path = (std::filesystem::path(f.data_dir) / "buffer.db").string();
  bopts.max_bytes = f.buffer_max_bytes;
  bopts.max_age_ms = f.buffer_max_age * 1000;
  bopts.policy = f.buffer_full_policy == "refuse-new" ? strata::edge::FullPolicy::kRefuseNew
                                                      : strata::edge::FullPolicy::kDropOldest;
  bopts.sync_full = f.buffer_sync == "full";
  auto buffer = strata::edge::Buffer::Open(bopts, metrics, clock);
  if (!buffer.ok()) {
    spdlog::error("{}", buffer.status().ToString());
    return 2;
  }
  auto& buf = **buffer;
  metrics.AddCallbackGauge("strata_edge_buffer_readings", "Readings in the buffer, not yet acknowledged",
                           [&buf] { return static_cast<double>(buf.Count()); });
  metrics.AddCallbackGauge("strata_edge_buffer_bytes", "Bytes of readings in the buffer",
                           [&buf] { return static_cast<double>(buf.Bytes()); });
  metrics.AddCallbackGauge("strata_edge_buffer_oldest_age_seconds", "Age of the oldest buffered reading",
                           [&buf] { return buf.OldestAgeSeconds(); });

  // The EDGE rules of the config revision, with their state and alarms in the buffer's file.
  auto edge_rules = strata::edge::EdgeRules::Open(buf, metrics, clock);
  if (!edge_rules.ok()) {
    spdlog::error("{}", edge_rules.status().ToString());
    return 2;
  }
  auto& rules = **edge_rules;

  // The devices this edge serves come from the config revision it runs (from disk at start,
  // so it serves them with no cloud at all), and change when the cloud sends a new one.
  strata::edge::DeviceDirectory directory;
  const bool reject_unknown = f.unknown_devices == "reject";
  // The settings the cloud manages override these flags: the revision the agent runs brings
  // them (at start, from disk, before the components below exist) and every later revision
  // changes them; each component takes them once it is built and at every revision after.
  std::mutex managed_mu;
  strata::v1::EdgeSettings managed;                                      // guarded by managed_mu
  std::function<void(const strata::v1::EdgeSettings&)> apply_managed;  // guarded by managed_mu
  std::atomic<bool> reject_now{reject_unknown};
  metrics.AddCallbackGauge("strata_edge_known_devices", "Devices in the config revision the agent runs",
                           [&directory] { return static_cast<double>(directory.Size()); });
  // Device twins: desired documents come with the config revision; reported ones wait in
  // twins.db until the cloud has them.
  strata::edge::TwinsOptions twins_options{
      .path = (std::filesystem::path(f.data_dir) / "twins.db").string(),
      .topic_prefix = f.topic_prefix,
      .synchronous = f.buffer_sync == "full" ? strata::sqlite::Synchronous::kFull : strata::sqlite::Synchronous::kNormal};
  twins_options.accept_device = [&directory, &reject_now](const std::string& id) {
    return !reject_now.load() || directory.Contains(id);
  };
  auto twins_store = strata::edge::Twins::Open(std::move(twins_options), metrics, clock);
  if (!twins_store.ok()) {
    spdlog::error("{}", twins_store.status().ToString());
    return 2;
  }
  auto& twins = **twins_store;
  auto config = strata::edge::ConfigStore::Open(
      {.path = (std::filesystem::path(f.data_dir) / "config.db").string(),
       .crash_after_step = f.crash_after_config_step,
       .on_applied =
           [&](const strata::v1::EdgeConfig& c) {
             twins.SetDesired(c);
             rules.SetConfig(c);
             std::lock_guard lock(managed_mu);
             managed = c.settings();
             if (apply_managed) apply_managed(managed);
           }},
      directory, metrics, clock);
  if (!config.ok()) {
    spdlog::error("{}", config.status().ToString());
    return 2;
  }
  auto& cfg = **config;
  if (const auto legacy = std::filesystem::path(f.data_dir) / "known-devices.txt";
      cfg.Applied().revision == 0 && std::filesystem::exists(legacy)) {
    // An agent upgraded from a release that kept a copy of the registry there: serve those
    // devices until the cloud's first config revision replaces them.
    std::set<std::string> devices;
    std::ifstream in(legacy);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) devices.insert(line);
    }
    spdlog::info("config: no revision yet; serving the {} devices of {} until the cloud sends one", devices.size(),
                 legacy.string());
    directory.Replace(std::move(devices));
  }

  // What the rules' saved states do not cover (a crash since their last save) is evaluated
  // again from the buffer before anything new comes in.
  if (auto s = rules.Replay(); !s.ok()) {
    // Going on would save states that skipped those readings: their alarms would be lost.
    spdlog::error("edge rules: cannot evaluate the buffered readings their saved states do not cover: {}",
                  s.ToString());
    return 2;
  }

  // Commands for this edge's devices, held from when they arrive until the cloud has recorded
  // how they ended (commands.db).
  auto outbox = strata::edge::CommandOutbox::Open(
      {.path = (std::filesystem::path(f.data_dir) / "commands.db").string(),
       .topic_prefix = f.topic_prefix,
       .presence_window = std::chrono::milliseconds(f.command_presence_window_ms),
       .max_open = f.command_max_open},
      metrics, clock);
  if (!outbox.ok()) {
    spdlog::error("{}", outbox.status().ToString());
    return 2;
  }
  auto& commands = **outbox;

  strata::edge::UplinkOptions uopts;
  uopts.cloud_address = f.cloud;
  uopts.edge_id = f.edge_id;
  uopts.batch_max = f.batch_max;
  uopts.linger = std::chrono::milliseconds(f.batch_linger_ms);
  uopts.window = f.window;
  // A revision from a cloud of version 3 or lower has no desired documents: the devices keep
  // those they have (a rolling upgrade or a rollback of the cloud must not clear them).
  uopts.on_config = [&cfg](const strata::v1::EdgeConfig& c, std::uint32_t version) {
    return cfg.Apply(c, version >= 4, version >= 5, version >= 6);
  };
  uopts.commands = &commands;
  uopts.twins = &twins;
  uopts.rules = &rules;
  strata::edge::Uplink uplink(uopts, buf, metrics);

  strata::edge::IngestOptions iopts;
  iopts.mqtt_url = f.mqtt_url;
  iopts.client_id = f.mqtt_client_id.empty() ? "strata-edge-" + f.edge_id : f.mqtt_client_id;
  iopts.topic_prefix = f.topic_prefix;
  iopts.persistence_dir = (std::filesystem::path(f.data_dir) / "mqtt").string();
  iopts.limits.max_payload_bytes = f.max_payload_bytes;
  iopts.limits.max_keys = f.max_keys;
  iopts.queue_capacity = f.queue_capacity;
  iopts.commit_linger = std::chrono::milliseconds(f.commit_linger_ms);
  iopts.unknown_devices =
      reject_unknown ? strata::edge::UnknownDevicePolicy::kReject : strata::edge::UnknownDevicePolicy::kRegister;
  iopts.commands = &commands;
  iopts.twins = &twins;
  iopts.rules = &rules;
  strata::edge::Ingest ingest(iopts, buf, metrics, clock, &directory);

  {
    std::lock_guard lock(managed_mu);
    apply_managed = [&](const strata::v1::EdgeSettings& m) {
      uplink.SetBatching(m.has_batch_max() ? m.batch_max() : f.batch_max,
                         std::chrono::milliseconds(m.has_batch_linger_ms() ? std::int64_t{m.batch_linger_ms()}
                                                                           : std::int64_t{f.batch_linger_ms}));
      const std::string policy = m.has_buffer_full_policy() ? m.buffer_full_policy() : f.buffer_full_policy;
      buf.SetLimits(m.has_buffer_max_bytes() ? m.buffer_max_bytes() : f.buffer_max_bytes,
                    m.has_buffer_max_age_ms() ? m.buffer_max_age_ms() : f.buffer_max_age * 1000,
                    policy == "refuse-new" ? strata::edge::FullPolicy::kRefuseNew
                                           : strata::edge::FullPolicy::kDropOldest);
      const bool reject = (m.has_unknown_devices() ? m.unknown_devices() : f.unknown_devices) == "reject";
      reject_now = reject;
      ingest.SetUnknownDevices(reject ? strata::edge::UnknownDevicePolicy::kReject
                                      : strata::edge::UnknownDevicePolicy::kRegister);
      spdlog::info("settings: batch_max {} linger {} ms, buffer {} bytes / {} ms / {}, unknown devices {}{}",
                   uplink.BatchMax(), uplink.Linger().count(), buf.GetLimits().max_bytes,
                   buf.GetLimits().max_age_ms, policy, reject ? "reject" : "register",
                   m.ByteSizeLong() > 0 ? " (some set by the cloud)" : "");
    };
    apply_managed(managed);
  }

  const auto listen = strata::ParseHostPort(f.http_listen);
  auto status_server = strata::edge::StatusServer::Start(
      listen.host, listen.port, [&](const std::string& target) -> strata::edge::HttpReply {
        if (target == "/healthz") return {200, "application/json", R"({"status":"ok"})"};
        if (target == "/metrics") return {200, "text/plain; version=0.0.4", metrics.Render()};
        if (target == "/status") {
          nlohmann::json j = {{"edge_id", f.edge_id},
                              {"mqtt", {{"url", f.mqtt_url}, {"connected", ingest.MqttConnected()}}},
                              {"cloud", {{"address", f.cloud}, {"connected", uplink.Connected()},
                                         {"high_water_mark", uplink.CloudMark()},
                                         {"last_error", uplink.LastError()},
                                         {"readings_refused", uplink.Refused()},
                                         {"last_refusal", uplink.LastRefusal()}}},
                              {"buffer", {{"readings", buf.Count()}, {"bytes", buf.Bytes()},
                                          {"oldest_age_seconds", buf.OldestAgeSeconds()},
                                          {"last_seq", buf.LastSeq()}, {"max_bytes", buf.GetLimits().max_bytes},
                                          {"max_age_ms", buf.GetLimits().max_age_ms},
                                          {"full_policy", buf.GetLimits().policy == strata::edge::FullPolicy::kRefuseNew
                                                              ? "refuse-new"
                                                              : "drop-oldest"}}},
                              {"batching", {{"batch_max", uplink.BatchMax()}, {"linger_ms", uplink.Linger().count()}}},
                              {"config", {{"revision", cfg.Applied().revision},
                                          {"applied_at", cfg.Applied().applied_at},
                                          {"devices", cfg.Applied().devices},
                                          {"protocol_version", uplink.ProtocolVersion()}}},
                              {"commands", CommandsJson(commands.GetStats())},
                              {"rules", {{"rules", rules.RuleCount()}, {"alarms_pending", rules.Pending()}}},
                              {"ingest_queue_depth", ingest.QueueDepth()},
                              {"unknown_devices", ingest.UnknownDevices() == strata::edge::UnknownDevicePolicy::kReject
                                                      ? "reject"
                                                      : "register"}};
          if (auto loss = uplink.LastBufferLoss(); loss.times > 0) {
            j["buffer"]["lost"] = {{"times", loss.times},
                                   {"detected_at", loss.detected_at},
                                   {"cloud_mark", loss.cloud_mark},
                                   {"local_last_seq", loss.local_last_seq},
                                   {"what_to_do", "see docs/operations.md, \"A lost edge buffer\""}};
          }
          return {200, "application/json", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)};
        }
        return {404, "application/json", R"({"error":"not found"})"};
      });
  if (!status_server.ok()) {
    spdlog::error("{}", status_server.status().ToString());
    return 2;
  }

  uplink.Start();
  ingest.Start();
  commands.Start([&ingest](const std::vector<std::pair<std::string, std::string>>& messages) {
    return ingest.Publish(messages);
  });
  twins.Start([&ingest](const std::vector<std::pair<std::string, std::string>>& messages) {
    return ingest.PublishRetained(messages);
  });
  spdlog::info("strata-edge {} ready: mqtt={} cloud={} status=http://{}:{}/status buffer={}", f.edge_id, f.mqtt_url,
               f.cloud, listen.host, (*status_server)->Port(), bopts.path);

  const int sig = strata::WaitForShutdownSignal(signals);
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // Stop intake first and commit everything received; then the uplink (what it has not sent
  // stays buffered for the next start). The outbox publishes through ingest's connection:
  // it and the twins' publisher stop first.
  commands.Stop();
  twins.Stop();
  ingest.Stop();
  if (auto s = rules.Save(); !s.ok()) spdlog::warn("edge rules: cannot save their states: {}", s.ToString());
  uplink.Stop();
  (*status_server)->Stop();
  spdlog::info("strata-edge stopped; {} readings buffered", buf.Count());
  return 0;
}

int Status(const std::string& http_listen) {
  const auto hp = strata::ParseHostPort(http_listen);
  auto body = strata::edge::HttpGet(hp.host == "0.0.0.0" ? "127.0.0.1" : hp.host, hp.port, "/status");
  if (!body.ok()) {
    std::cerr << "strata-edge is not answering on " << http_listen << ": " << body.status().message() << "\n";
    return 1;
  }
  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded()) {
    std::cout << *body << "\n";
    return 0;
  }
  const auto& b = j["buffer"];
  std::cout << "edge            " << j["edge_id"].get<std::string>() << "\n"
            << "mqtt            " << j["mqtt"]["url"].get<std::string>() << "  "
            << (j["mqtt"]["connected"].get<bool>() ? "connected" : "DISCONNECTED") << "\n"
            << "cloud           " << j["cloud"]["address"].get<std::string>() << "  "
            << (j["cloud"]["connected"].get<bool>() ? "connected" : "DISCONNECTED")
            << "  (cloud has up to seq " << j["cloud"]["high_water_mark"] << ")\n"
            << "buffer          " << b["readings"] << " readings, " << b["bytes"] << " of " << b["max_bytes"]
            << " bytes, oldest " << b["oldest_age_seconds"].get<double>() << " s, last seq " << b["last_seq"]
            << ", when full: " << b["full_policy"].get<std::string>() << "\n"
            << "ingest queue    " << j["ingest_queue_depth"] << " messages\n";
  if (const auto& c = j["config"]; c.is_object()) {
    std::cout << "config          revision " << c["revision"];
    if (c.value("revision", 0) > 0) {
      const std::time_t at = static_cast<std::time_t>(c.value("applied_at", std::int64_t{0}) / 1000);
      std::tm tm{};
      gmtime_r(&at, &tm);
      std::cout << ", applied " << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ") << ", " << c["devices"] << " devices";
    } else {
      std::cout << " (none applied yet)";
    }
    std::cout << "\n";
  }
  if (const auto& c = j["commands"]; c.is_object()) {
    std::cout << "commands        " << c["open"] << " open (";
    bool first = true;
    for (const auto& [state, n] : c["by_state"].items()) {
      std::cout << (first ? "" : ", ") << state << " " << n;
      first = false;
    }
    std::cout << "), " << c["reports_pending"] << " reports not yet recorded by the cloud\n";
  }
  if (const auto& r = j["rules"]; r.is_object()) {
    std::cout << "rules           " << r["rules"] << " edge rules, " << r["alarms_pending"]
              << " alarm transitions not yet recorded by the cloud\n";
  }
  if (const auto& c = j["cloud"]; c.value("readings_refused", 0) > 0) {
    std::cout << "refused         " << c["readings_refused"] << " readings by the cloud; last: "
              << c.value("last_refusal", "") << "\n";
  }
  if (const auto& e = j["cloud"].value("last_error", ""); !e.empty()) std::cout << "last error      " << e << "\n";
  if (b.contains("lost")) {
    const auto& l = b["lost"];
    std::cout << "BUFFER LOST     " << l["times"] << " time(s); the cloud had up to seq " << l["cloud_mark"]
              << " while this buffer had handed out " << l["local_last_seq"]
              << ": unacknowledged readings of the lost buffer are gone (docs/operations.md, \"A lost edge buffer\")\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata-edge: Strata's gateway agent (MQTT ingest, durable buffer, cloud sync)"};
  Flags f;
  strata::UseYamlConfig(app);
  strata::AddFlag(app, "mqtt-url", f.mqtt_url, "Local broker, tcp://HOST:PORT");
  strata::AddFlag(app, "mqtt-client-id", f.mqtt_client_id, "MQTT client id (default strata-edge-EDGE_ID); keep it fixed");
  strata::AddFlag(app, "topic-prefix", f.topic_prefix, "Telemetry arrives on PREFIX/{device_id}/telemetry");
  strata::AddFlag(app, "cloud", f.cloud, "strata-cloud gRPC address HOST:PORT");
  strata::AddFlag(app, "edge-id", f.edge_id, "This gateway's id (required)");
  strata::AddFlag(app, "data-dir", f.data_dir, "Directory for the buffer (buffer.db) and the config revision (config.db)");
  strata::AddFlag(app, "http-listen", f.http_listen, "Local status port: /healthz, /metrics, /status");
  strata::AddFlag(app, "max-payload-bytes", f.max_payload_bytes, "Larger MQTT payloads are rejected");
  strata::AddFlag(app, "max-keys", f.max_keys, "Most values in one message");
  strata::AddFlag(app, "unknown-devices", f.unknown_devices,
          "register: devices not in the registry are registered by the cloud; reject: they are rejected here")
      ->check(CLI::IsMember({"register", "reject"}));
  strata::AddFlag(app, "buffer-max-bytes", f.buffer_max_bytes, "Buffer bound in bytes");
  strata::AddFlag(app, "buffer-max-age", f.buffer_max_age, "Readings older than this many seconds are dropped")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10} * 365 * 24 * 3600));
  strata::AddFlag(app, "buffer-full-policy", f.buffer_full_policy, "drop-oldest or refuse-new")
      ->check(CLI::IsMember({"drop-oldest", "refuse-new"}));
  strata::AddFlag(app, "buffer-sync", f.buffer_sync, "full (commits survive power loss) or normal (survive crashes)")
      ->check(CLI::IsMember({"full", "normal"}));
  strata::AddFlag(app, "batch-max", f.batch_max, "Most readings per batch to the cloud")->check(CLI::Range(1, 50000));
  strata::AddFlag(app, "batch-linger-ms", f.batch_linger_ms, "How long a batch waits to fill")
      ->check(CLI::Range(0, 60000));
  strata::AddFlag(app, "window", f.window, "Most unacknowledged batches in flight")->check(CLI::Range(1, 1024));
  strata::AddFlag(app, "commit-linger-ms", f.commit_linger_ms,
                  "How long a buffer commit waits for more messages to join it (fewer fsyncs)")
      ->check(CLI::Range(0, 1000));
  strata::AddFlag(app, "queue-capacity", f.queue_capacity, "Messages between MQTT and the pipeline (back-pressure beyond)");
  strata::AddFlag(app, "command-presence-window-ms", f.command_presence_window_ms,
                  "A device gets its commands while it has sent anything within this long; 0: always (devices "
                  "that only listen, with a persistent MQTT session)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{7} * 24 * 3600 * 1000));
  strata::AddFlag(app, "command-max-open", f.command_max_open,
                  "Most commands the edge holds that have not ended; the cloud keeps further ones queued and "
                  "offers them again every 30 s")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
  strata::AddFlag(app, "log-level", f.log_level, "trace, debug, info, warn or error");
  strata::AddFlag(app, "log-format", f.log_format, "text or json");
  strata::AddFlag(app, "fault-crash-after-config-step", f.crash_after_config_step,
                  "Testing only: exit abruptly after this step of applying a config revision (staged, switched)")
      ->check(CLI::IsMember({"", "staged", "switched"}))
      ->group("Testing");
  auto* status_cmd = app.add_subcommand("status", "Print the state of the agent running on --http-listen");
  status_cmd->fallthrough();  // `strata-edge status --http-listen ...` takes the main flags
  try {
    app.parse(argc, argv);
    if (*status_cmd) return Status(f.http_listen);
    strata::ConfigureLogging(f.log_level, f.log_format);
    return Run(f);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "strata-edge: " << e.what() << "\n";
    return 2;
  }
}
