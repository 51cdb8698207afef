// strata-sim: the perception-layer simulator. Publishes plausible telemetry for the six
// application scenarios to an MQTT broker, as devices would, optionally with a share of
// deliberately malformed messages, and writes what it sent to a JSON report.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "generator.h"
#include "publisher.h"

namespace {

using namespace strata::sim;
using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitBroker = 1;  // the broker cannot be reached, or the connection was lost
constexpr int kExitUsage = 2;

struct Flags {
  std::string mqtt_url = "tcp://127.0.0.1:1883";
  std::string client_id;
  int qos = 1;
  std::string scenarios = "all";
  std::size_t devices = 6;
  double rate = 10;
  double duration_s = 0;
  std::uint64_t count = 0;
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::int64_t start_ts_ms = -1;
  std::int64_t step_ms = -1;
  double malformed_ratio = 0;
  std::string malformed_kinds = "all";
  std::size_t oversize_bytes = 64 * 1024;
  std::string payload_shape = "ts";
  std::string topic_prefix = "v1/devices";
  std::size_t max_inflight = 1000;
  double connect_timeout_s = 5;
  double drain_timeout_s = 10;
  std::string report;
  std::string log_level = "info";
};

std::int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
}

bool WriteReport(const std::string& path, const nlohmann::json& report) {
  // Write to a temporary file and rename, so a reader never sees half a report.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << report.dump(2) << '\n';
    if (!out.good()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by a dedicated thread through sigwait; block them before any thread
  // (Paho's included) starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // internal: wakes the signal thread at the end of the run
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Flags f;
  CLI::App app{"strata-sim: publishes simulated sensor telemetry to an MQTT broker"};
  app.add_option("--mqtt-url", f.mqtt_url, "broker URL")->capture_default_str();
  app.add_option("--client-id", f.client_id, "MQTT client id (default strata-sim-<pid>)");
  app.add_option("--qos", f.qos, "publish QoS")->check(CLI::IsMember({0, 1}))->capture_default_str();
  app.add_option("--topic-prefix", f.topic_prefix, "topics are PREFIX/{device_id}/telemetry")->capture_default_str();
  app.add_option("--scenarios", f.scenarios,
                 "all, or a comma list of manufacturing, agriculture, grid, healthcare, transportation, environment")
      ->capture_default_str();
  app.add_option("--devices", f.devices, "devices in total, dealt out over the scenarios")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--rate", f.rate, "messages per second in total; 0 = as fast as possible")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--duration", f.duration_s, "stop after this many seconds (default: until SIGINT/SIGTERM)")
      ->check(CLI::PositiveNumber);
  app.add_option("--count", f.count, "stop after this many messages (default: until SIGINT/SIGTERM)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", f.seed, "seed: the same seed and flags give the same topics and values (default: random)");
  app.add_option("--start-ts", f.start_ts_ms,
                 "unix ms of the first sample; sample i then has ts = start-ts + i * step-ms (default: the clock)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--step-ms", f.step_ms, "model time between samples (default: 1000 / rate, at least 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--payload-shape", f.payload_shape, "ts, flat or mixed")
      ->check(CLI::IsMember({"ts", "flat", "mixed"}))
      ->capture_default_str();
  app.add_option("--malformed-ratio", f.malformed_ratio, "share of deliberately malformed messages, 0..1")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--malformed-kinds", f.malformed_kinds,
                 "all, or a comma list of invalid_json, wrong_type, nested_object, oversized, invalid_device_id")
      ->capture_default_str();
  app.add_option("--oversize-bytes", f.oversize_bytes, "oversized messages are this many bytes + 1")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} * 1024 * 1024))
      ->capture_default_str();
  app.add_option("--max-inflight", f.max_inflight, "most messages awaiting delivery at once")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65535}))
      ->capture_default_str();
  app.add_option("--connect-timeout", f.connect_timeout_s, "seconds")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--drain-timeout", f.drain_timeout_s, "seconds to wait for outstanding deliveries at exit")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--report", f.report, "write a JSON summary of what was published to this file at exit");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every usage error exits kExitUsage (not CLI11's own codes).
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  f.seed_given = app.count("--seed") > 0;

  auto logger = spdlog::stderr_color_mt("strata-sim");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(f.log_level));

  GeneratorOptions gen_options;
  try {
    gen_options.scenarios = ParseScenarioList(f.scenarios);
    gen_options.malformed_kinds = ParseMalformedKinds(f.malformed_kinds);
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  if (!f.seed_given) f.seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  gen_options.seed = f.seed;
  gen_options.devices = f.devices;
  gen_options.shape = *ParsePayloadShape(f.payload_shape);
  gen_options.topic_prefix = f.topic_prefix;
  gen_options.malformed_ratio = f.malformed_ratio;
  if (f.start_ts_ms >= 0) gen_options.start_ts = f.start_ts_ms;
  gen_options.step_ms =
      f.step_ms >= 0 ? f.step_ms : (f.rate > 0 ? std::max<std::int64_t>(1, std::llround(1000.0 / f.rate)) : 1);
  gen_options.oversize_bytes = f.oversize_bytes;
  std::optional<Generator> generator;
  try {
    generator.emplace(gen_options);
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  if (f.devices < gen_options.scenarios.size()) {
    spdlog::warn("{} devices for {} scenarios: some scenarios get no device", f.devices, gen_options.scenarios.size());
  }

  PublisherOptions pub_options;
  pub_options.url = f.mqtt_url;
  pub_options.client_id = f.client_id.empty() ? "strata-sim-" + std::to_string(::getpid()) : f.client_id;
  pub_options.qos = f.qos;
  pub_options.max_inflight = f.max_inflight;
  pub_options.connect_timeout = Millis(f.connect_timeout_s);
  pub_options.topic_prefix = f.topic_prefix;
  std::string connect_error;
  auto publisher = Publisher::Connect(pub_options, generator->devices(), connect_error);
  if (!publisher) {
    spdlog::error("{}", connect_error);
    return kExitBroker;
  }
  spdlog::info("connected to {} as {}; {} devices, {} msg/s{}, qos {}, shape {}, seed {}", f.mqtt_url,
               pub_options.client_id, f.devices, f.rate, f.rate == 0 ? " (unpaced)" : "", f.qos, f.payload_shape,
               f.seed);

  std::atomic<int> signals_seen{0};
  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0 || sig == SIGUSR1) return;
      if (signals_seen.fetch_add(1) == 0) {
        spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        publisher->RequestStop();
      } else {
        spdlog::warn("second signal: exiting without draining");
        std::_Exit(kExitBroker);
      }
    }
  });

  const auto start = Clock::now();
  const auto deadline =
      f.duration_s > 0 ? start + Millis(f.duration_s) : Clock::time_point::max();
  std::uint64_t i = 0;
  for (;; ++i) {
    if (f.count > 0 && i >= f.count) break;
    if (f.rate > 0) {
      // Message i is due at start + i / rate: the schedule comes from the start time, so
      // late wake-ups do not accumulate into drift.
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(static_cast<double>(i) / f.rate));
      if (due >= deadline) break;
      if (!publisher->SleepUntil(due)) break;
    }
    if (Clock::now() >= deadline) break;
    if (!publisher->Publish(generator->Next(UnixMs()))) break;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  const std::size_t outstanding = publisher->Drain(Millis(f.drain_timeout_s));
  if (outstanding > 0) spdlog::warn("{} messages still unconfirmed at exit", outstanding);
  const std::string error = publisher->Error();
  publisher->Disconnect(std::chrono::seconds(2));

  nlohmann::json extra = {{"seed", f.seed},
                          {"qos", f.qos},
                          {"payload_shape", f.payload_shape},
                          {"elapsed_seconds", elapsed},
                          {"error", error}};
  const nlohmann::json report = publisher->ReportJson(extra);
  spdlog::info("published {} messages ({} good, {} malformed, {} readings) in {:.2f} s; {} failed, {} unconfirmed",
               report["published"].get<std::uint64_t>(), report["good"].get<std::uint64_t>(),
               report["malformed"].get<std::uint64_t>(), report["readings"].get<std::uint64_t>(), elapsed,
               report["failed"].get<std::uint64_t>(), report["unconfirmed"].get<std::uint64_t>());
  int code = kExitOk;
  if (!error.empty()) {
    spdlog::error("publishing to {} ended early: {}", f.mqtt_url, error);
    code = kExitBroker;
  }
  if (!f.report.empty() && !WriteReport(f.report, report)) {
    spdlog::error("cannot write the report to {}", f.report);
    code = code == kExitOk ? kExitUsage : code;
  }

  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  publisher.reset();
  return code;
}
