// strata_bench: measures each hop of the data path against the raw ceiling of the same
// component, in the same run, with real processes (mosquitto, PostgreSQL, strata-edge,
// strata-cloud, strata-sim), and prints one Markdown table.
//
//   strata_bench [--smoke] [--output FILE] [--only LIST] [--platform-rate R] [--ladder RATES]
//
// --smoke runs every measurement on a small load (CI checks that the harness works and
// every figure is positive); without it the loads are the ones docs/benchmarks.md reports.
// --only runs the listed measurements (e.g. 5,6,7; default all). (6) and (7) run at half of
// the rate (5) found; when (5) is not run, at half of --platform-rate R, else of (5)'s target.
// --ladder RATES (e.g. 7500 or 5000,6000) replaces (5)'s ladder, to look at one rate again.
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <strata/rules/engine.h>

#include "strata/v1/commands.grpc.pb.h"
#include "strata/v1/edgesync.grpc.pb.h"
#include "strata/v1/registry.grpc.pb.h"
#include "strata/v1/telemetry.grpc.pb.h"
#include "support/http_client.h"
#include "support/metrics_text.h"
#include "support/mosquitto.h"
#include "support/pg_server.h"
#include "support/process.h"

namespace {

using namespace strata::testing;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Row {
  std::string what;
  std::string figure;
  std::string ratio;
  std::string target;
};

double MetricOf(unsigned short port, const std::string& sample) {
  try {
    return MetricSample(HttpRequest("GET", "127.0.0.1", port, "/metrics").body, sample);
  } catch (const std::exception&) {
    return -1;
  }
}

// A field of /proc/PID/status in MiB: VmRSS (resident set), RssAnon (heap, stacks),
// RssFile (mapped files: the binary and its shared libraries).
double StatusMiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == field + ":") {
      double kb = 0;
      in >> kb;
      return kb / 1024.0;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

double RssMiB(pid_t pid) { return StatusMiB(pid, "VmRSS"); }

std::string Fmt(double v, int precision = 0) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

// The fields of /proc/PID/stat after the command name (which may hold spaces): [0] is the
// state, [1] the parent pid, [11] utime, [12] stime, [13] cutime, [14] cstime (clock ticks).
std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// CPU seconds (user + system) `pid` has used; with `reaped`, also those of its children it
// has waited for. 0 when the process is gone.
double CpuSeconds(pid_t pid, bool reaped = false) {
  const auto f = StatFields(pid);
  if (f.size() < 15) return 0;
  double ticks = std::stod(f[11]) + std::stod(f[12]);
  if (reaped) ticks += std::stod(f[13]) + std::stod(f[14]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// All of PostgreSQL: the postmaster, its live backends and workers, and those that exited.
double PostgresCpuSeconds(pid_t postmaster) {
  double total = CpuSeconds(postmaster, true);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto f = StatFields(std::stoi(name));
    if (f.size() > 1 && f[1] == std::to_string(postmaster)) total += CpuSeconds(std::stoi(name));
  }
  return total;
}

// Busy and total jiffies of the whole machine (the first line of /proc/stat).
std::pair<double, double> MachineJiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double busy = 0, total = 0, v = 0;
  for (int i = 0; i < 8 && in >> v; ++i) {  // user nice system idle iowait irq softirq steal
    total += v;
    if (i != 3 && i != 4) busy += v;
  }
  return {busy, total};
}

// Where the CPU goes while the whole platform runs: cores used by each process over a
// window, and how busy the machine was.
struct CpuSplit {
  double sim = 0, broker = 0, edge = 0, cloud = 0, postgres = 0;
  double machine_busy = 0;  // fraction of all cores
  double others() const { return machine_busy * std::thread::hardware_concurrency() -
                                 (sim + broker + edge + cloud + postgres); }
  std::string Text() const {
    return "strata-sim " + Fmt(sim, 2) + ", mosquitto " + Fmt(broker, 2) + ", strata-edge " + Fmt(edge, 2) +
           ", strata-cloud " + Fmt(cloud, 2) + ", PostgreSQL " + Fmt(postgres, 2) + ", rest " + Fmt(others(), 2) +
           " cores; machine " + Fmt(100 * machine_busy) + " % busy";
  }
};

// The publisher every measurement uses. Manufacturing devices send three values per message,
// about 110 bytes of JSON, over 1,000 device topics. With --start-ts and --step-ms 1 the
// simulator stamps its i-th message (whatever the device) ts = start_ts + i, so no two
// messages share a timestamp and every (device, key, ts) of a run is unique.
std::vector<std::string> SimCommonArgs(const std::string& url, int qos, const std::string& client,
                                       std::int64_t start_ts) {
  return {STRATA_SIM_BIN, "--mqtt-url", url, "--scenarios", "manufacturing", "--devices", "1000",
          "--qos", std::to_string(qos), "--seed", "42", "--client-id", client, "--max-inflight", "1000",
          "--start-ts", std::to_string(start_ts), "--step-ms", "1"};
}

std::vector<std::string> SimArgs(const std::string& url, int count, int qos, const std::string& client) {
  auto args = SimCommonArgs(url, qos, client, 1700000000000);
  args.insert(args.end(), {"--rate", "0", "--count", std::to_string(count)});
  return args;
}

// (1) A bare subscriber that only counts, fed by strata-sim through mosquitto.
double BrokerCeiling(const std::string& dir, int count, int qos) {
  MosquittoServer broker;
  std::atomic<int> received{0};
  Clock::time_point first{}, last{};
  mqtt::async_client sub(broker.Url(), "bench-counter");
  sub.set_message_callback([&](mqtt::const_message_ptr) {
    const int n = ++received;
    if (n == 1) first = Clock::now();
    if (n == count) last = Clock::now();
  });
  mqtt::connect_options opts;
  opts.set_clean_session(true);
  sub.connect(opts)->wait();
  sub.subscribe("v1/devices/+/telemetry", qos)->wait();
  Process sim(SimArgs(broker.Url(), count, qos, "bench-pub"), dir + "/sim-broker.log");
  WaitFor([&] { return received.load() >= count || !sim.Running(); }, std::chrono::seconds(600));
  WaitFor([&] { return received.load() >= count; }, std::chrono::seconds(10));
  sub.disconnect()->wait();
  if (received.load() < count) throw std::runtime_error("subscriber got " + std::to_string(received.load()));
  return count / Seconds(last - first);
}

struct EdgeIngest {
  double msgs_per_s = 0;
  double rss_idle = 0;
  double rss_idle_anon = 0;
  double rss_idle_file = 0;
  double rss_peak = 0;
};

// (2) and (8): strata-edge with its uplink down; everything goes to the durable buffer.
EdgeIngest EdgeIngestRate(const std::string& dir, int count, int qos) {
  MosquittoServer broker;
  const unsigned short http = FreePort();
  const std::string data = dir + "/edge-" + std::to_string(qos) + "-" + std::to_string(count);
  Process edge({STRATA_EDGE_BIN, "--edge-id", "bench", "--mqtt-url", broker.Url(), "--cloud",
                "127.0.0.1:" + std::to_string(FreePort()), "--data-dir", data, "--http-listen",
                "127.0.0.1:" + std::to_string(http), "--log-level", "warn"},
               data + ".log");
  if (!WaitFor([&] { return MetricOf(http, "strata_edge_mqtt_connected") == 1; }, std::chrono::seconds(30))) {
    throw std::runtime_error("strata-edge did not connect: " + edge.Log());
  }
  EdgeIngest r;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // settle: idle RSS, not start-up
  r.rss_idle = RssMiB(edge.pid());
  r.rss_idle_anon = StatusMiB(edge.pid(), "RssAnon");
  r.rss_idle_file = StatusMiB(edge.pid(), "RssFile");
  Process sim(SimArgs(broker.Url(), count, qos, "bench-pub"), data + "-sim.log");
  Clock::time_point first{}, last{};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      r.rss_peak = std::max(r.rss_peak, RssMiB(edge.pid()));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  WaitFor([&] { return MetricOf(http, "strata_edge_messages_received_total") > 0; }, std::chrono::seconds(60));
  first = Clock::now();
  const bool ok = WaitFor([&] { return MetricOf(http, "strata_edge_readings_buffered_total") >= 3.0 * count; },
                          std::chrono::seconds(900));
  last = Clock::now();
  done = true;
  sampler.join();
  if (!ok) throw std::runtime_error("strata-edge buffered only " +
                                    std::to_string(MetricOf(http, "strata_edge_readings_buffered_total")));
  r.msgs_per_s = count / Seconds(last - first);
  edge.Stop(SIGTERM);
  return r;
}

std::unique_ptr<Process> StartCloud(const std::string& url, const std::string& dir, unsigned short grpc,
                                    unsigned short http);

// (13) (2) with a site's rules: 100 EDGE rules (two keys, a 30 s duration, a clear, as in
// (12)) over all 1,000 devices, which reach the edge in its config revision from a cloud
// that is then stopped; the uplink is down while it is measured, as in (2).
struct EdgeRulesIngest {
  double msgs_per_s = 0;
  double evaluations = 0;
  double transitions = 0;
};

EdgeRulesIngest EdgeIngestWithRules(const std::string& dir, int count, int rule_count) {
  MosquittoServer broker;
  const std::string data = dir + "/edge-rules-" + std::to_string(count);
  const unsigned short grpc = FreePort(), cloud_http = FreePort(), http = FreePort();
  auto cloud = StartCloud("sqlite://" + data + "-cloud.db", dir, grpc, cloud_http);
  auto call = [&](const std::string& method, const std::string& target, const std::string& body) {
    auto r = HttpRequest(method, "127.0.0.1", cloud_http, target, body);
    if (r.status != 200) throw std::runtime_error("(13) " + target + ": " + std::to_string(r.status) + " " + r.body);
  };
  call("POST", "/v1/edges", R"({"edge_id":"bench"})");
  for (int i = 0; i < rule_count; ++i) {
    const double t = 80.0 + (i % 20), v = 3.0 + (i % 5) * 0.5;
    nlohmann::json rule = {
        {"rule_id", "rule-" + std::to_string(i)},
        {"location", "EDGE"},
        {"alarm_type", "rule-" + std::to_string(i)},
        {"raise", {{{"severity", "MAJOR"},
                    {"condition", "machine_temperature > " + Fmt(t, 1) + " || vibration > " + Fmt(v, 1)}}}},
        {"clear", "machine_temperature < " + Fmt(t - 5.0, 1) + " && vibration < " + Fmt(v - 1.0, 1)},
        {"for_ms", "30000"}};
    call("POST", "/v1/rules", rule.dump());
  }
  Process edge({STRATA_EDGE_BIN, "--edge-id", "bench", "--mqtt-url", broker.Url(), "--cloud",
                "127.0.0.1:" + std::to_string(grpc), "--data-dir", data, "--http-listen",
                "127.0.0.1:" + std::to_string(http), "--log-level", "warn"},
               data + ".log");
  if (!WaitFor([&] { return MetricOf(http, "strata_edge_mqtt_connected") == 1; }, std::chrono::seconds(30))) {
    throw std::runtime_error("strata-edge did not connect: " + edge.Log());
  }
  // One message per device registers the devices (in the cloud, for this edge); the revision
  // then brings them and the rules.
  {
    Process warm(SimArgs(broker.Url(), 1000, 1, "bench-warm"), data + "-warm.log");
    if (!WaitFor([&] { return MetricOf(http, "strata_edge_known_devices") >= 1000 &&
                              MetricOf(http, "strata_edge_rules") == rule_count; },
                 std::chrono::seconds(120))) {
      throw std::runtime_error("(13) the edge did not get its devices and rules: " + edge.Log());
    }
  }
  cloud->Stop(SIGTERM);
  EdgeRulesIngest r;
  const double buffered = MetricOf(http, "strata_edge_readings_buffered_total");
  const double evaluated = MetricOf(http, "strata_edge_rule_evaluations_total");
  Process sim(SimArgs(broker.Url(), count, 1, "bench-pub"), data + "-sim.log");
  WaitFor([&] { return MetricOf(http, "strata_edge_readings_buffered_total") > buffered; }, std::chrono::seconds(60));
  const auto first = Clock::now();
  const bool ok = WaitFor(
      [&] { return MetricOf(http, "strata_edge_readings_buffered_total") >= buffered + 3.0 * count; },
      std::chrono::seconds(900));
  const auto last = Clock::now();
  if (!ok) throw std::runtime_error("(13) strata-edge did not buffer every reading");
  r.msgs_per_s = count / Seconds(last - first);
  r.evaluations = MetricOf(http, "strata_edge_rule_evaluations_total") - evaluated;
  r.transitions = MetricOf(http, "strata_edge_rule_transitions_total");
  edge.Stop(SIGTERM);
  return r;
}

// (8) strata-edge's RSS while a backlog of `readings` builds up with the cloud unreachable.
double EdgeBacklogPeakRss(const std::string& dir, int readings) {
  MosquittoServer broker;
  const unsigned short http = FreePort();
  const std::string data = dir + "/edge-backlog";
  Process edge({STRATA_EDGE_BIN, "--edge-id", "bench", "--mqtt-url", broker.Url(), "--cloud",
                "127.0.0.1:" + std::to_string(FreePort()), "--data-dir", data, "--http-listen",
                "127.0.0.1:" + std::to_string(http), "--log-level", "warn",
                "--buffer-max-bytes", std::to_string(1ull << 30)},
               data + ".log");
  if (!WaitFor([&] { return MetricOf(http, "strata_edge_mqtt_connected") == 1; }, std::chrono::seconds(30))) {
    throw std::runtime_error("strata-edge did not connect: " + edge.Log());
  }
  const int messages = (readings + 2) / 3;
  Process sim(SimArgs(broker.Url(), messages, 1, "bench-backlog"), data + "-sim.log");
  double peak = 0;
  const bool ok = WaitFor(
      [&] {
        peak = std::max(peak, RssMiB(edge.pid()));
        return MetricOf(http, "strata_edge_buffer_readings") >= 3.0 * messages;
      },
      std::chrono::seconds(1800));
  if (!ok) throw std::runtime_error("the backlog did not build up");
  peak = std::max(peak, RssMiB(edge.pid()));
  edge.Stop(SIGTERM);
  return peak;
}

struct Percentiles {
  double p50_ms = 0;
  double p99_ms = 0;
};

Percentiles Summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * ms.size()))]; };
  return {at(0.50), at(0.99)};
}

// (9) Query latency over a large table: `per_key` readings for each of 3 keys of 1,000
// devices over 24 h, loaded with COPY; then Aggregate (one device key, 24 h in 1-minute
// buckets) and Latest (each of the 1,000 devices) through strata-cloud's gRPC API.
std::pair<Percentiles, Percentiles> QueryLatency(const std::string& url, const std::string& dir, int per_key,
                                                 std::size_t* loaded) {
  const unsigned short grpc = FreePort(), http = FreePort();
  const std::int64_t day_ms = 86400000;
  const std::int64_t t0 = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count() /
                          day_ms * day_ms;
  {
    auto cloud = StartCloud(url, dir, grpc, http);  // schema and today's partitions
    cloud->Stop(SIGTERM);
  }
  static const char* kKeys[] = {"machine_temperature", "vibration", "spindle_speed"};
  const std::int64_t step = day_ms / per_key;
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    tx.exec("TRUNCATE telemetry, telemetry_latest, devices");
    tx.exec_params("INSERT INTO devices (tenant_id, device_id, name, created_at, updated_at)"
                   " SELECT 'default', 'q-' || g, 'q-' || g, $1, $1 FROM generate_series(0, 999) g",
                   t0);
    pqxx::stream_to copy(tx, "telemetry", std::vector<std::string>{"tenant_id", "device_id", "key", "ts", "v_double"});
    for (int d = 0; d < 1000; ++d) {
      const std::string device = "q-" + std::to_string(d);
      for (const char* key : kKeys) {
        for (int j = 0; j < per_key; ++j) {
          copy << std::make_tuple(std::string("default"), device, std::string(key), t0 + j * step, 20.0 + (j % 50));
        }
      }
    }
    copy.complete();
    tx.exec("INSERT INTO telemetry_latest (tenant_id, device_id, key, ts, v_double)"
            " SELECT DISTINCT ON (tenant_id, device_id, key) tenant_id, device_id, key, ts, v_double"
            " FROM telemetry ORDER BY tenant_id, device_id, key, ts DESC");
    tx.commit();
    pqxx::nontransaction(c).exec("ANALYZE");
  }
  *loaded = 1000ull * 3 * per_key;
  auto cloud = StartCloud(url, dir, grpc, http);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc), grpc::InsecureChannelCredentials());
  auto stub = strata::v1::Telemetry::NewStub(channel);
  std::vector<double> agg_ms, latest_ms;
  for (int i = 0; i < 60; ++i) {
    strata::v1::AggregateTelemetryRequest req;
    req.set_device_id("q-" + std::to_string((i * 37) % 1000));
    req.add_keys("machine_temperature");
    req.set_start(t0);
    req.set_end(t0 + day_ms);
    req.set_interval(60000);
    req.set_function(strata::v1::AGGREGATION_FUNCTION_AVG);
    strata::v1::AggregateTelemetryResponse res;
    grpc::ClientContext ctx;
    const auto start = Clock::now();
    auto status = stub->Aggregate(&ctx, req, &res);
    if (!status.ok()) throw std::runtime_error("Aggregate: " + status.error_message());
    if (i >= 10) agg_ms.push_back(Seconds(Clock::now() - start) * 1000);  // first 10 warm up
  }
  for (int d = 0; d < 1000; ++d) {
    strata::v1::LatestTelemetryRequest req;
    req.set_device_id("q-" + std::to_string(d));
    strata::v1::LatestTelemetryResponse res;
    grpc::ClientContext ctx;
    const auto start = Clock::now();
    auto status = stub->Latest(&ctx, req, &res);
    if (!status.ok() || res.readings_size() != 3) throw std::runtime_error("Latest: " + status.error_message());
    latest_ms.push_back(Seconds(Clock::now() - start) * 1000);
  }
  cloud->Stop(SIGTERM);
  return {Summarize(agg_ms), Summarize(latest_ms)};
}

// One telemetry row in the cloud's layout.
struct Reading {
  std::string device;
  std::string key;
  std::int64_t ts;
  double value;
};

std::vector<Reading> MakeReadings(int n) {
  static const char* kKeys[] = {"machine_temperature", "vibration", "spindle_speed"};
  std::vector<Reading> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) {
    const int msg = i / 3;
    v.push_back({"mfg-" + std::to_string(msg % 1000), kKeys[i % 3], 1700000000000 + msg, 20.0 + (i % 97) * 0.5});
  }
  return v;
}

// Starts strata-cloud on `url` and waits for /readyz.
std::unique_ptr<Process> StartCloud(const std::string& url, const std::string& dir, unsigned short grpc,
                                    unsigned short http) {
  auto p = std::make_unique<Process>(
      std::vector<std::string>{STRATA_CLOUD_BIN, "--database", url, "--grpc-listen",
                               "127.0.0.1:" + std::to_string(grpc), "--http-listen",
                               "127.0.0.1:" + std::to_string(http), "--log-level", "warn"},
      dir + "/cloud-" + std::to_string(grpc) + ".log");
  if (!WaitFor([&] {
        try {
          return HttpRequest("GET", "127.0.0.1", http, "/readyz").status == 200;
        } catch (...) {
          return false;
        }
      },
               std::chrono::seconds(60))) {
    throw std::runtime_error("strata-cloud did not start: " + p->Log());
  }
  return p;
}

// (3) COPY of the same readings straight into the cloud's telemetry table.
double DatabaseCeiling(const std::string& url, const std::vector<Reading>& readings) {
  pqxx::connection c(url);
  pqxx::work w(c);
  w.exec("TRUNCATE telemetry");
  w.commit();
  const auto start = Clock::now();
  pqxx::work tx(c);
  pqxx::stream_to copy(tx, "telemetry",
                       std::vector<std::string>{"tenant_id", "device_id", "key", "ts", "v_double"});
  for (const auto& r : readings) copy << std::make_tuple(std::string("default"), r.device, r.key, r.ts, r.value);
  copy.complete();
  tx.commit();
  return readings.size() / Seconds(Clock::now() - start);
}

// (4) A synthetic edge streaming batches of 5,000 over EdgeSync, window of 8.
double CloudIngest(const std::string& grpc_address, const std::vector<Reading>& readings) {
  auto stub = strata::v1::EdgeSync::NewStub(grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  strata::v1::EdgeMessage hello;
  hello.mutable_hello()->set_edge_id("bench-edge");
  hello.mutable_hello()->set_protocol_version(1);
  strata::v1::CloudMessage in;
  if (!stream->Write(hello) || !stream->Read(&in)) throw std::runtime_error("no welcome");
  std::uint64_t seq = in.welcome().high_water_mark();
  std::vector<strata::v1::EdgeMessage> batches;
  // strata-edge's defaults: --batch-max 5000, --window 8.
  constexpr std::size_t kBatch = 5000;
  for (std::size_t i = 0; i < readings.size(); i += kBatch) {
    strata::v1::EdgeMessage m;
    auto* b = m.mutable_batch();
    b->set_first_seq(seq + 1);
    for (std::size_t j = i; j < std::min(readings.size(), i + kBatch); ++j) {
      auto* r = b->add_readings();
      r->set_seq(++seq);
      r->set_device_id(readings[j].device);
      r->set_key(readings[j].key);
      r->set_ts(readings[j].ts);
      r->mutable_value()->set_double_value(readings[j].value);
    }
    b->set_last_seq(seq);
    batches.push_back(std::move(m));
  }
  std::atomic<std::size_t> acked{0};
  std::thread reader([&] {
    strata::v1::CloudMessage msg;
    while (acked < batches.size() && stream->Read(&msg)) {
      if (msg.has_ack()) ++acked;
    }
  });
  const auto start = Clock::now();
  for (std::size_t i = 0; i < batches.size(); ++i) {
    while (i >= acked + 8) std::this_thread::sleep_for(std::chrono::microseconds(200));
    stream->Write(batches[i]);
  }
  reader.join();
  const double rate = readings.size() / Seconds(Clock::now() - start);
  stream->WritesDone();
  ctx.TryCancel();
  if (acked < batches.size()) throw std::runtime_error("not every batch was acknowledged");
  return rate;
}

std::string MachineLine() {
  utsname u{};
  uname(&u);
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return std::to_string(std::thread::hardware_concurrency()) + " cores (" + model + "), " + u.sysname + " " +
         u.release;
}

// ---- (5), (6), (7): the whole platform under a paced publisher ----

// The edge's buffer bound for the platform measurements, far above anything (7)'s outage can
// pile up (5 minutes at 12,500 msg/s is about 11 M readings): nothing may be dropped, so that
// every published reading has to reach storage.
constexpr std::uint64_t kPlatformBufferBytes = 16ull << 30;
// The simulated devices' ids (strata-sim, manufacturing scenario) and the probe's device.
constexpr const char* kSimDevices = "mfg-%";
constexpr const char* kProbeDevice = "bench-probe";

// Stored rows of the devices matching $1 and how many distinct (device, key, ts) they hold.
// The primary key makes the two equal by construction (a repeated delivery overwrites its
// own row); the check is kept so that the figure does not depend on that.
constexpr const char* kCountStoredSql =
    "SELECT count(*), count(DISTINCT (device_id, key, ts)) FROM telemetry"
    " WHERE tenant_id = 'default' AND device_id LIKE $1";

std::int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The figures of strata-edge's /metrics that the platform measurements read, from one scrape.
struct EdgeFigures {
  bool ok = false;       // the agent answered
  double mqtt_up = 0;    // strata_edge_mqtt_connected (1 once subscribed)
  double uplink_up = 0;  // strata_edge_uplink_connected
  double connects = 0;   // strata_edge_uplink_connects_total
  double received = 0;   // strata_edge_messages_received_total
  double rejected = 0;   // strata_edge_messages_rejected_total, every reason
  double buffered = 0;   // strata_edge_buffer_readings: committed, not yet acknowledged
  double acked = 0;      // strata_edge_readings_acked_total
  double dropped = 0;    // strata_edge_readings_dropped_total, every reason
};

EdgeFigures ScrapeEdge(unsigned short http) {
  EdgeFigures f;
  try {
    const std::string body = HttpRequest("GET", "127.0.0.1", http, "/metrics").body;
    f.mqtt_up = MetricSample(body, "strata_edge_mqtt_connected");
    f.uplink_up = MetricSample(body, "strata_edge_uplink_connected");
    f.connects = MetricSample(body, "strata_edge_uplink_connects_total");
    f.received = MetricSample(body, "strata_edge_messages_received_total");
    f.rejected = MetricTotal(body, "strata_edge_messages_rejected_total");
    f.buffered = MetricSample(body, "strata_edge_buffer_readings");
    f.acked = MetricSample(body, "strata_edge_readings_acked_total");
    f.dropped = MetricTotal(body, "strata_edge_readings_dropped_total");
    // MetricSample is -1 for a missing sample: that is no figure either.
    f.ok = f.mqtt_up >= 0 && f.uplink_up >= 0 && f.connects >= 0 && f.received >= 0 && f.buffered >= 0 &&
           f.acked >= 0;
  } catch (const std::exception&) {
    // Not answering (yet, or any more): ok stays false, and the caller's condition says what
    // that means for it.
  }
  return f;
}

// A default of strata-edge as its --help prints it ("--batch-linger-ms INT=20"), so the report
// names the batching that applied without restating the agent's defaults here.
std::string EdgeDefault(const std::string& dir, const std::string& flag) {
  Process help({STRATA_EDGE_BIN, "--help"}, dir + "/edge-help-" + flag + ".log");
  help.Wait(std::chrono::seconds(10));
  std::istringstream in(help.Log());
  std::string line;
  while (std::getline(in, line)) {
    const auto at = line.find("--" + flag + " ");
    if (at == std::string::npos) continue;
    const auto eq = line.find('=', at);
    if (eq == std::string::npos) break;
    const auto end = line.find_first_of(" \t", eq);
    return line.substr(eq + 1, end == std::string::npos ? std::string::npos : end - eq - 1);
  }
  return "?";
}

// The whole platform on this machine, as one gateway and its cloud run it: mosquitto,
// strata-cloud on PostgreSQL at `db_url`, and strata-edge between them with its default
// batching and flow control (only the buffer bound is raised). The destructor stops every
// process it started: the edge first (it commits what it received), then the cloud, then the
// broker.
class Platform {
 public:
  Platform(const std::string& dir, const std::string& name, std::string db_url)
      : dir_(dir), name_(name), db_url_(std::move(db_url)), grpc_(FreePort()), cloud_http_(FreePort()),
        edge_http_(FreePort()) {
    StartCloud();
    StartEdge();
  }
  ~Platform() {
    if (edge_) edge_->Stop(SIGTERM, std::chrono::seconds(30));
    StopCloud();
    broker_.Stop();
  }
  Platform(const Platform&) = delete;
  Platform& operator=(const Platform&) = delete;

  // SIGTERM, as an operator stops it; the edge keeps ingesting into its buffer meanwhile.
  void StopCloud() {
    if (cloud_) cloud_->Stop(SIGTERM);
    cloud_.reset();
  }
  // On the same database and ports; returns once /readyz answers 200.
  void StartCloud() { cloud_ = ::StartCloud(db_url_, dir_, grpc_, cloud_http_); }
  // SIGTERM: it commits what it received; the broker keeps its session meanwhile.
  void StopEdge() {
    if (edge_) edge_->Stop(SIGTERM, std::chrono::seconds(30));
    edge_.reset();
  }
  // On the same data directory; returns once it is subscribed (else the broker would discard
  // the first messages) and streaming to the cloud.
  void StartEdge() {
    const std::string data = dir_ + "/" + name_ + "-edge";
    edge_ = std::make_unique<Process>(
        std::vector<std::string>{STRATA_EDGE_BIN, "--edge-id", name_, "--mqtt-url", broker_.Url(), "--cloud",
                                 GrpcAddress(), "--data-dir", data, "--http-listen",
                                 "127.0.0.1:" + std::to_string(edge_http_), "--log-level", "warn",
                                 "--buffer-max-bytes", std::to_string(kPlatformBufferBytes)},
        data + "." + std::to_string(++edge_starts_) + ".log");
    if (!WaitFor([&] {
          const auto f = TryEdge();
          return f.ok && f.mqtt_up == 1 && f.uplink_up == 1;
        },
                 std::chrono::seconds(30))) {
      throw std::runtime_error("strata-edge did not connect to the broker and the cloud: " + edge_->Log());
    }
  }

  // For polling: ok is false when the agent did not answer.
  EdgeFigures TryEdge() const { return ScrapeEdge(edge_http_); }
  // For figures that are reported: throws when the agent did not answer.
  EdgeFigures Edge() const {
    auto f = ScrapeEdge(edge_http_);
    if (!f.ok) throw std::runtime_error("strata-edge's /metrics did not answer: " + edge_->Log());
    return f;
  }
  std::string MqttUrl() const { return broker_.Url(); }
  pid_t BrokerPid() const { return broker_.Pid(); }
  pid_t EdgePid() const { return edge_ ? edge_->pid() : -1; }
  pid_t CloudPid() const { return cloud_ ? cloud_->pid() : -1; }
  std::string GrpcAddress() const { return "127.0.0.1:" + std::to_string(grpc_); }
  const std::string& db_url() const { return db_url_; }

 private:
  std::string dir_;
  std::string name_;
  std::string db_url_;
  unsigned short grpc_, cloud_http_, edge_http_;
  int edge_starts_ = 0;
  MosquittoServer broker_;
  std::unique_ptr<Process> cloud_;
  std::unique_ptr<Process> edge_;
};

// strata-sim publishing `rate` msg/s on its steady-clock schedule (message i is due at
// start + i / rate; a late publisher catches up rather than drifting) for `duration_s`
// seconds, or until SIGTERM when it is 0, QoS 1, writing its report to `report` at exit.
std::unique_ptr<Process> StartPacedSim(const std::string& url, double rate, double duration_s,
                                       const std::string& report, const std::string& client) {
  auto args = SimCommonArgs(url, 1, client, UnixMs());
  args.insert(args.end(), {"--rate", Fmt(rate, 3), "--report", report, "--log-level", "warn"});
  if (duration_s > 0) args.insert(args.end(), {"--duration", Fmt(duration_s, 3)});
  return std::make_unique<Process>(args, report + ".log");
}

// What strata-sim says it published (its --report file).
struct SimRun {
  std::uint64_t published = 0;  // messages the broker acknowledged (PUBACK)
  std::uint64_t readings = 0;   // values in them
  std::uint64_t failed = 0;
  std::uint64_t unconfirmed = 0;
  double elapsed_s = 0;  // publishing time, before the final drain of PUBACKs
  std::string error;
};

// Waits for the simulator to exit by itself (or stops it with SIGTERM when `stop`), then reads
// its report. Throws when it did not exit cleanly: the exactly-once checks need its counts.
SimRun FinishSim(Process& sim, const std::string& report, bool stop, std::chrono::milliseconds timeout) {
  const int status = stop ? sim.Stop(SIGTERM, timeout) : sim.Wait(timeout);
  if (status == -1) throw std::runtime_error("strata-sim did not finish: " + sim.Log());
  std::ifstream in(report);
  if (!in) throw std::runtime_error("strata-sim wrote no report (exit status " + std::to_string(status) +
                                    "): " + sim.Log());
  const auto j = nlohmann::json::parse(in);
  SimRun r;
  r.published = j.at("published").get<std::uint64_t>();
  r.readings = j.at("readings").get<std::uint64_t>();
  r.failed = j.at("failed").get<std::uint64_t>();
  r.unconfirmed = j.at("unconfirmed").get<std::uint64_t>();
  r.elapsed_s = j.at("elapsed_seconds").get<double>();
  r.error = j.at("error").get<std::string>();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !r.error.empty() || r.failed > 0 || r.unconfirmed > 0) {
    throw std::runtime_error("strata-sim did not publish cleanly (" + r.error + ", " + std::to_string(r.failed) +
                             " failed, " + std::to_string(r.unconfirmed) + " unconfirmed): " + sim.Log());
  }
  return r;
}

struct StoredCount {
  std::int64_t rows = 0;
  std::int64_t distinct = 0;
};

StoredCount CountStored(const std::string& url, const std::string& device_like) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  const auto row = tx.exec_params1(kCountStoredSql, device_like);
  return {row[0].as<std::int64_t>(), row[1].as<std::int64_t>()};
}

// The database's name is the last part of the URL PgServer::CreateDatabase returns; dropped
// once a rung is counted, so that seven rungs of up to 4.5 M rows do not fill the disk.
void DropDatabase(PgServer& pg, const std::string& url) {
  pqxx::connection c(pg.Url());
  pqxx::nontransaction(c).exec("DROP DATABASE IF EXISTS " + c.quote_name(url.substr(url.rfind('/') + 1)));
}

struct CpuSnapshot {
  double sim, broker, edge, cloud, postgres, busy, total;
  Clock::time_point at;
};

CpuSnapshot TakeCpu(const Platform& platform, pid_t sim, pid_t postmaster) {
  const auto [busy, total] = MachineJiffies();
  return {CpuSeconds(sim),        CpuSeconds(platform.BrokerPid()),  CpuSeconds(platform.EdgePid()),
          CpuSeconds(platform.CloudPid()), PostgresCpuSeconds(postmaster), busy, total, Clock::now()};
}

CpuSplit CpuBetween(const CpuSnapshot& a, const CpuSnapshot& b) {
  const double s = Seconds(b.at - a.at);
  CpuSplit c;
  c.sim = (b.sim - a.sim) / s;
  c.broker = (b.broker - a.broker) / s;
  c.edge = (b.edge - a.edge) / s;
  c.cloud = (b.cloud - a.cloud) / s;
  c.postgres = (b.postgres - a.postgres) / s;
  c.machine_busy = b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
  return c;
}

// One rung of (5): the result and, when it failed, every condition that failed with its figure.
struct Rung {
  double rate = 0;
  bool sustained = false;
  std::string why;
  double published_rate = 0;  // messages the broker acknowledged / duration
  double unstored_at_end = 0;  // readings published but not acknowledged by the cloud
  double buffered_at_end = 0;  // strata_edge_buffer_readings at the same moment
  double ack_s = -1;           // end of publishing → the last reading acknowledged
  double unacked_final = 0;    // readings still unacknowledged when the last wait ended
  std::uint64_t expected = 0;
  StoredCount stored;
  CpuSplit cpu;  // while publishing, from 2 s in to 1 s before the end
};

// (5), one rate: a fresh platform on a fresh database, strata-sim at `rate` for `duration_s`.
// Sustained when (a) the simulator published at least 97 % of the rate, (b) when it stopped,
// at most 2 s worth of readings were not yet acknowledged by the cloud, (c) all of them were
// within `ack_deadline` after, (d) storage holds exactly 3 rows per published message, each
// (device, key, ts) once, and (e) the edge dropped and rejected nothing.
//
// (b) counts published − acknowledged readings rather than the edge's buffer gauge alone:
// readings still queued in mosquitto or in the edge's ingest queue are a backlog too, and the
// gauge does not see them. Both are logged.
Rung RunRung(PgServer& pg, const std::string& dir, double rate, double duration_s,
             std::chrono::milliseconds ack_deadline) {
  Rung r;
  r.rate = rate;
  const std::string name = "bench-r" + Fmt(rate);
  const std::string url = pg.CreateDatabase();
  const std::string report = dir + "/" + name + "-sim.json";
  double dropped = 0, rejected = 0;
  {
    Platform platform(dir, name, url);
    auto sim = StartPacedSim(platform.MqttUrl(), rate, duration_s, report, name + "-sim");
    const auto started = Clock::now();
    std::this_thread::sleep_until(started + std::chrono::seconds(2));
    const CpuSnapshot cpu_from = TakeCpu(platform, sim->pid(), pg.pid());
    std::this_thread::sleep_until(started + std::chrono::milliseconds(static_cast<long>(std::max(duration_s - 1, 2.5) * 1000)));
    r.cpu = CpuBetween(cpu_from, TakeCpu(platform, sim->pid(), pg.pid()));
    const SimRun run = FinishSim(*sim, report, false,
                                 std::chrono::milliseconds(static_cast<long>(duration_s * 1000)) +
                                     std::chrono::seconds(120));
    const auto ended = Clock::now();
    const EdgeFigures end = platform.Edge();
    r.expected = run.readings;
    r.published_rate = run.published / duration_s;
    r.unstored_at_end = static_cast<double>(run.readings) - end.acked;
    r.buffered_at_end = end.buffered;
    if (WaitFor([&] { return platform.TryEdge().acked >= run.readings; }, ack_deadline)) {
      r.ack_s = Seconds(Clock::now() - ended);
    } else {
      // Not sustained; still wait (bounded) to tell a slow rate from lost readings.
      WaitFor([&] { return platform.TryEdge().acked >= run.readings; }, std::chrono::seconds(300));
    }
    const EdgeFigures last = platform.Edge();
    dropped = last.dropped;
    rejected = last.rejected;
    r.unacked_final = static_cast<double>(run.readings) - last.acked;
    r.stored = CountStored(url, kSimDevices);
    std::cerr << "    " << Fmt(rate) << " msg/s: published " << run.published << " in " << Fmt(run.elapsed_s, 2)
              << " s; at the end " << Fmt(r.unstored_at_end) << " readings unacknowledged (" << Fmt(r.buffered_at_end)
              << " in the edge buffer); all acknowledged " << (r.ack_s >= 0 ? Fmt(r.ack_s, 2) + " s" : "NOT")
              << " after; stored " << r.stored.rows << " rows (" << r.stored.distinct << " distinct) of "
              << r.expected << "; edge acked " << Fmt(last.acked) << "\n    CPU while publishing: " << r.cpu.Text()
              << "\n";
  }
  DropDatabase(pg, url);

  std::vector<std::string> failed;
  if (r.published_rate < 0.97 * rate) {
    failed.push_back("strata-sim published only " + Fmt(r.published_rate) + " msg/s (" +
                     Fmt(r.published_rate / rate, 3) + " of the rate)");
  }
  if (r.unstored_at_end > 3 * rate * 2) {
    failed.push_back("backlog when publishing stopped " + Fmt(r.unstored_at_end) + " readings (" +
                     Fmt(r.unstored_at_end / (3 * rate), 1) + " s worth; " + Fmt(r.buffered_at_end) +
                     " of them in the edge buffer)");
  }
  if (r.ack_s < 0) {
    failed.push_back("not all acknowledged within " + Fmt(Seconds(ack_deadline), 0) + " s after publishing");
  }
  if (r.unacked_final > 0) {
    failed.push_back("exactly-once not verified: " + Fmt(r.unacked_final) +
                     " readings still unacknowledged 300 s after publishing");
  } else if (r.stored.rows != static_cast<std::int64_t>(r.expected) || r.stored.distinct != r.stored.rows) {
    failed.push_back("stored " + std::to_string(r.stored.rows) + " rows (" + std::to_string(r.stored.distinct) +
                     " distinct) of " + std::to_string(r.expected) + " published readings");
  }
  if (dropped != 0 || rejected != 0) {
    failed.push_back("the edge dropped " + Fmt(dropped) + " readings and rejected " + Fmt(rejected) + " messages");
  }
  r.sustained = failed.empty();
  for (const auto& f : failed) r.why += (r.why.empty() ? "" : "; ") + f;
  return r;
}

struct Ladder {
  double sustained = 0;  // the highest rate that held; 0 if none did
  std::vector<Rung> rungs;
};

// (5) Up the ladder of rates until the first that does not hold.
Ladder SustainedRate(PgServer& pg, const std::string& dir, const std::vector<double>& rates, double duration_s,
                     std::chrono::milliseconds ack_deadline) {
  Ladder l;
  for (double rate : rates) {
    std::cerr << "  (5) " << Fmt(rate) << " msg/s for " << Fmt(duration_s) << " s...\n";
    l.rungs.push_back(RunRung(pg, dir, rate, duration_s, ack_deadline));
    if (!l.rungs.back().sustained) break;
    l.sustained = rate;
  }
  return l;
}

struct ProbeLatencyResult {
  Percentiles latency;
  std::size_t samples = 0;
  std::size_t timeouts = 0;  // probes not visible within 5 s
  double sim_rate = 0;       // what strata-sim really published meanwhile
  std::int64_t probes_stored = 0;
};

// (6) While strata-sim publishes `rate` msg/s, a probe client publishes {"ts", "values":
// {"probe": k}} for its own device every 100 ms (QoS 1) and polls Telemetry.Latest every
// 0.5 ms until value k is visible: latency = visible − just before publishing.
ProbeLatencyResult ProbeLatency(PgServer& pg, const std::string& dir, double rate, double probe_s) {
  const std::string url = pg.CreateDatabase();
  const std::string report = dir + "/latency-sim.json";
  ProbeLatencyResult r;
  std::vector<double> ms;
  {
    Platform platform(dir, "bench-latency", url);
    auto sim = StartPacedSim(platform.MqttUrl(), rate, 0, report, "bench-latency-sim");
    // The load is flowing end to end: a second's worth of readings acknowledged.
    if (!WaitFor([&] { return platform.TryEdge().acked >= 3 * rate; }, std::chrono::seconds(60))) {
      throw std::runtime_error("(6): the simulator's readings do not reach the cloud");
    }
    auto stub = strata::v1::Telemetry::NewStub(
        grpc::CreateChannel(platform.GrpcAddress(), grpc::InsecureChannelCredentials()));
    auto visible = [&](std::int64_t k) {
      strata::v1::LatestTelemetryRequest req;
      req.set_device_id(kProbeDevice);
      req.add_keys("probe");
      strata::v1::LatestTelemetryResponse res;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      if (!stub->Latest(&ctx, req, &res).ok()) return false;  // NOT_FOUND until the device exists
      for (const auto& reading : res.readings()) {
        if (reading.key() == "probe" && reading.value().kind_case() == strata::v1::Value::kIntValue &&
            reading.value().int_value() == k) {
          return true;
        }
      }
      return false;
    };
    mqtt::async_client probe(platform.MqttUrl(), "bench-probe");
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    probe.connect(opts)->wait();
    const std::string topic = std::string("v1/devices/") + kProbeDevice + "/telemetry";
    // Publishes k and returns how long until Latest shows it; -1 if not within 5 s.
    auto measure = [&](std::int64_t k) {
      const std::string payload =
          "{\"ts\":" + std::to_string(UnixMs()) + ",\"values\":{\"probe\":" + std::to_string(k) + "}}";
      const auto sent = Clock::now();
      auto token = probe.publish(topic, payload.data(), payload.size(), 1, false);
      double latency = -1;
      while (Clock::now() - sent < std::chrono::seconds(5)) {
        if (visible(k)) {
          latency = Seconds(Clock::now() - sent) * 1000;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
      token->wait_for(std::chrono::seconds(5));
      return latency;
    };
    // Probe 0 registers the device (its first batch does, in the cloud); not counted.
    if (measure(0) < 0 && !WaitFor([&] { return visible(0); }, std::chrono::seconds(30))) {
      throw std::runtime_error("(6): the probe device never became visible");
    }
    const auto start = Clock::now();
    std::int64_t k = 1;
    for (; Seconds(Clock::now() - start) < probe_s; ++k) {
      // The probe's own pace (one message per 100 ms), not a wait for a condition.
      std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * (k - 1)));
      const double latency = measure(k);
      if (latency < 0) {
        ++r.timeouts;
      } else {
        ms.push_back(latency);
      }
    }
    probe.disconnect()->wait();
    const SimRun run = FinishSim(*sim, report, true, std::chrono::seconds(30));
    r.sim_rate = run.published / run.elapsed_s;
    // Every probe stored once (0 .. k-1).
    if (!WaitFor([&] { return CountStored(url, kProbeDevice).rows >= k; }, std::chrono::seconds(30))) {
      throw std::runtime_error("(6): not every probe was stored");
    }
    r.probes_stored = CountStored(url, kProbeDevice).rows;
  }
  DropDatabase(pg, url);
  if (ms.empty()) throw std::runtime_error("(6): no probe became visible within 5 s");
  r.samples = ms.size();
  r.latency = Summarize(ms);
  return r;
}

struct DrainResult {
  double outage_s = 0;
  double backlog_at_restart = 0;  // strata_edge_buffer_readings just before the restart
  double cloud_ready_s = 0;       // restart → /readyz
  double reconnect_s = -1;        // restart → the edge's stream is back
  double drain_deadline_s = 0;
  double drain_s = -1;            // restart → backlog back at ≤ 2 s worth; -1 if not by the deadline
  double drain_rate = 0;          // readings/s: (backlog at restart + published meanwhile) / drain_s
  double backlog_at_end = 0;      // the buffer when drained, or at the deadline
  double acked_rate = 0;          // readings/s the cloud acknowledged from the restart to then
  std::uint64_t expected = 0;     // readings strata-sim published in the whole run
  double unacked = 0;             // of those, not acknowledged when the final wait ended
  StoredCount stored;
  double dropped = 0;
};

// (7) strata-sim publishes `rate` msg/s throughout; strata-cloud is stopped (SIGTERM) for
// `outage_s` and started again on the same database and ports. Drained when the edge's buffer
// is back at ≤ 2 s worth of readings, at most 2 × outage + 120 s after the restart. Then
// publishing stops and storage must hold every published reading once.
DrainResult BacklogDrain(PgServer& pg, const std::string& dir, double rate, double outage_s) {
  const std::string url = pg.CreateDatabase();
  const std::string report = dir + "/drain-sim.json";
  const double steady = 3 * rate;  // readings/s
  DrainResult r;
  r.outage_s = outage_s;
  r.drain_deadline_s = 2 * outage_s + 120;
  {
    Platform platform(dir, "bench-drain", url);
    auto sim = StartPacedSim(platform.MqttUrl(), rate, 0, report, "bench-drain-sim");
    if (!WaitFor([&] { return platform.TryEdge().acked >= 2 * steady; }, std::chrono::seconds(60))) {
      throw std::runtime_error("(7): the simulator's readings do not reach the cloud");
    }
    platform.StopCloud();
    // The outage is the measured condition itself: its length is chosen, not waited for.
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(outage_s * 1000)));
    if (!sim->Running()) throw std::runtime_error("(7): strata-sim stopped during the outage: " + sim->Log());
    const EdgeFigures before = platform.Edge();
    r.backlog_at_restart = before.buffered;
    const auto restart = Clock::now();
    const auto deadline = restart + std::chrono::milliseconds(static_cast<long>(r.drain_deadline_s * 1000));
    auto left = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::max(deadline - Clock::now(), Clock::duration{}));
    };
    platform.StartCloud();
    r.cloud_ready_s = Seconds(Clock::now() - restart);
    if (WaitFor([&] { return platform.TryEdge().connects > before.connects; }, left())) {
      r.reconnect_s = Seconds(Clock::now() - restart);
    }
    const bool drained = WaitFor(
        [&] {
          const auto f = platform.TryEdge();
          return f.ok && f.buffered <= 2 * steady;
        },
        left());
    const double waited = Seconds(Clock::now() - restart);
    const EdgeFigures after = platform.Edge();
    r.backlog_at_end = after.buffered;
    r.acked_rate = (after.acked - before.acked) / waited;
    if (drained) {
      r.drain_s = waited;
      r.drain_rate = (r.backlog_at_restart + steady * r.drain_s) / r.drain_s;
    }
    std::cerr << "    backlog " << Fmt(r.backlog_at_restart) << " readings at the restart; cloud ready after "
              << Fmt(r.cloud_ready_s, 2) << " s, edge reconnected after " << Fmt(r.reconnect_s, 2) << " s; "
              << (drained ? "drained" : "NOT drained") << " after " << Fmt(waited, 1) << " s (buffer "
              << Fmt(r.backlog_at_end) << "); acknowledged " << Fmt(r.acked_rate) << " readings/s meanwhile\n";
    const SimRun run = FinishSim(*sim, report, true, std::chrono::seconds(30));
    r.expected = run.readings;
    // Every reading must arrive; a backlog that did not drain may need longer than is worth
    // waiting for, in which case exactly-once is reported as not verified.
    WaitFor([&] { return platform.TryEdge().acked >= run.readings; },
            drained ? std::chrono::seconds(300) : std::chrono::seconds(60));
    const EdgeFigures last = platform.Edge();
    r.unacked = static_cast<double>(run.readings) - last.acked;
    r.dropped = last.dropped;
    r.stored = CountStored(url, kSimDevices);
  }
  DropDatabase(pg, url);
  return r;
}

// An MQTT request/response through the platform's broker between two bare clients (the raw
// ceiling of a command's trip to a device and back): `requester` publishes on bench/ping/N,
// `responder` answers each on bench/pong/N at once, both at QoS 0 (the broker's bare round
// trip: at QoS 1 an idle Paho client's PUBACK and its answer meet Nagle's algorithm and the
// broker's delayed ACK, about 40 ms). Ping() measures one exchange; Burst() `n` exchanges
// with up to 1,000 outstanding.
class MqttPingPong {
 public:
  explicit MqttPingPong(const std::string& url)
      : requester_(url, "bench-ping", mqtt::create_options(MQTTVERSION_DEFAULT, 2001)),
        responder_(url, "bench-pong", mqtt::create_options(MQTTVERSION_DEFAULT, 2001)) {
    mqtt::connect_options opts;
    opts.set_clean_session(true);
    opts.set_max_inflight(2000);
    responder_.set_message_callback([this](mqtt::const_message_ptr m) {
      const std::string topic = m->get_topic();
      responder_.publish("bench/pong/" + topic.substr(topic.rfind('/') + 1), m->to_string(), 0, false);
    });
    requester_.set_message_callback([this](mqtt::const_message_ptr) {
      std::lock_guard lock(mu_);
      ++answered_;
      cv_.notify_all();
    });
    responder_.connect(opts)->wait();
    requester_.connect(opts)->wait();
    responder_.subscribe("bench/ping/+", 0)->wait();
    requester_.subscribe("bench/pong/+", 0)->wait();
  }
  ~MqttPingPong() {
    for (auto* c : {&requester_, &responder_}) {
      try {
        c->disconnect()->wait_for(std::chrono::seconds(5));
      } catch (...) {
      }
    }
  }
  // One exchange, ms; -1 if no answer within 5 s.
  double Ping() {
    std::unique_lock lock(mu_);
    const std::uint64_t want = answered_ + 1;
    const auto sent = Clock::now();
    lock.unlock();
    requester_.publish("bench/ping/" + std::to_string(want), "{}", 0, false);
    lock.lock();
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return answered_ >= want; })) return -1;
    return Seconds(Clock::now() - sent) * 1000;
  }
  // `n` exchanges with at most 1,000 outstanding; returns exchanges per second.
  double Burst(int n) {
    std::unique_lock lock(mu_);
    const std::uint64_t base = answered_;
    lock.unlock();
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      lock.lock();
      cv_.wait(lock, [&] { return static_cast<std::uint64_t>(i) < answered_ - base + 1000; });
      lock.unlock();
      requester_.publish("bench/ping/" + std::to_string(i), "{}", 0, false);
    }
    lock.lock();
    if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return answered_ - base >= static_cast<std::uint64_t>(n); })) {
      throw std::runtime_error("MQTT request/response ceiling: answers missing");
    }
    return n / Seconds(Clock::now() - start);
  }

 private:
  mqtt::async_client requester_, responder_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t answered_ = 0;  // guarded by mu_
};

// Waits until strata-sim's device `device` is registered through the edge (it then has an
// edge, so commands to it are accepted).
void WaitDeviceOnEdge(strata::v1::DeviceRegistry::Stub& registry, const std::string& device) {
  const bool ok = WaitFor(
      [&] {
        strata::v1::GetDeviceRequest req;
        req.set_device_id(device);
        strata::v1::Device d;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
        return registry.GetDevice(&ctx, req, &d).ok() && !d.edge_id().empty();
      },
      std::chrono::seconds(60));
  if (!ok) throw std::runtime_error("device " + device + " was not registered through the edge");
}

// strata-sim's i-th manufacturing device (0-based): mfg-0001, mfg-0002, ...
std::string SimDevice(int i) {
  const std::string d = std::to_string(1 + i);
  return "mfg-" + std::string(d.size() < 4 ? 4 - d.size() : 0, '0') + d;
}

// SendCommand; throws when the cloud refuses it.
strata::v1::Command Call(strata::v1::Commands::Stub& commands, const std::string& device, const std::string& name) {
  strata::v1::SendCommandRequest req;
  req.set_device_id(device);
  req.set_name(name);
  (*req.mutable_params()->mutable_fields())["rpm"].set_number_value(1200);
  strata::v1::Command c;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (auto s = commands.SendCommand(&ctx, req, &c); !s.ok()) {
    throw std::runtime_error("SendCommand to " + device + " failed: " + s.error_message());
  }
  return c;
}

struct CommandLatencyResult {
  Percentiles command, mqtt;
  std::size_t samples = 0, mqtt_samples = 0;
  int timeouts = 0;
  double sim_rate = 0;
};

// (10) A command's round trip while strata-sim publishes `rate` msg/s (its devices answer
// commands): SendCommand (gRPC) to a simulated device, then GetCommand until it is SUCCEEDED,
// one command per 100 ms for `probe_s`; against the same exchange done directly over MQTT
// through the same broker, in the same run, under the same load.
CommandLatencyResult CommandLatency(PgServer& pg, const std::string& dir, double rate, double probe_s) {
  const std::string url = pg.CreateDatabase();
  const std::string report = dir + "/commands-sim.json";
  CommandLatencyResult r;
  {
    Platform platform(dir, "bench-commands", url);
    auto sim = StartPacedSim(platform.MqttUrl(), rate, 0, report, "bench-commands-sim");
    auto channel = grpc::CreateChannel(platform.GrpcAddress(), grpc::InsecureChannelCredentials());
    auto registry = strata::v1::DeviceRegistry::NewStub(channel);
    auto commands = strata::v1::Commands::NewStub(channel);
    WaitDeviceOnEdge(*registry, SimDevice(0));
    auto state_of = [&](const std::string& id) {
      strata::v1::GetCommandRequest req;
      req.set_command_id(id);
      strata::v1::Command c;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      return commands->GetCommand(&ctx, req, &c).ok() ? c.state() : strata::v1::COMMAND_STATE_UNSPECIFIED;
    };
    std::vector<double> ms, raw;
    MqttPingPong pingpong(platform.MqttUrl());
    const auto start = Clock::now();
    for (int k = 0; Seconds(Clock::now() - start) < probe_s; ++k) {
      // The probes' own pace (one per 100 ms), not a wait for a condition.
      std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * k));
      if (const double p = pingpong.Ping(); p >= 0) raw.push_back(p);
      const auto sent = Clock::now();
      const strata::v1::Command c = Call(*commands, SimDevice(k % 1000), "set_speed");
      double latency = -1;
      while (Clock::now() - sent < std::chrono::seconds(5)) {
        if (state_of(c.command_id()) == strata::v1::COMMAND_STATE_SUCCEEDED) {
          latency = Seconds(Clock::now() - sent) * 1000;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (latency < 0) {
        ++r.timeouts;
      } else {
        ms.push_back(latency);
      }
    }
    const SimRun run = FinishSim(*sim, report, true, std::chrono::seconds(30));
    r.sim_rate = run.published / run.elapsed_s;
    if (ms.empty() || raw.empty()) throw std::runtime_error("(10): no command ended SUCCEEDED within 5 s");
    r.samples = ms.size();
    r.mqtt_samples = raw.size();
    r.command = Summarize(ms);
    r.mqtt = Summarize(raw);
  }
  DropDatabase(pg, url);
  return r;
}

struct CommandDrainResult {
  int queued = 0;
  double queue_s = 0;       // to send them all (gRPC, one at a time)
  double reconnect_s = -1;  // edge start → its stream is up
  double drain_s = -1;      // edge start → every command ended; -1 if not within the deadline
  std::int64_t succeeded = 0, ended = 0;
  double mqtt_rate = 0;     // the raw ceiling: MQTT request/response exchanges per second
};

// (11) `n` commands queued in the cloud (10 per simulated device) while the edge is stopped;
// then the edge starts, and the time until every one has ended, while strata-sim publishes
// `rate` msg/s. Against the same number of request/response exchanges done directly over
// MQTT with 1,000 outstanding, through the same broker, in the same run.
CommandDrainResult CommandDrain(PgServer& pg, const std::string& dir, double rate, int n) {
  const std::string url = pg.CreateDatabase();
  const std::string report = dir + "/command-drain-sim.json";
  CommandDrainResult r;
  r.queued = n;
  {
    Platform platform(dir, "bench-command-drain", url);
    auto sim = StartPacedSim(platform.MqttUrl(), rate, 0, report, "bench-command-drain-sim");
    auto channel = grpc::CreateChannel(platform.GrpcAddress(), grpc::InsecureChannelCredentials());
    auto registry = strata::v1::DeviceRegistry::NewStub(channel);
    auto commands = strata::v1::Commands::NewStub(channel);
    const int devices = std::min(1000, std::max(1, n / 10));
    for (int i = 0; i < devices; ++i) WaitDeviceOnEdge(*registry, SimDevice(i));
    {
      MqttPingPong pingpong(platform.MqttUrl());
      r.mqtt_rate = pingpong.Burst(n);
    }
    platform.StopEdge();
    const auto queue_start = Clock::now();
    for (int i = 0; i < n; ++i) Call(*commands, SimDevice(i % devices), "set_speed");
    r.queue_s = Seconds(Clock::now() - queue_start);
    pqxx::connection db(url);
    auto count = [&](const char* where) {
      pqxx::nontransaction tx(db);
      return tx.exec1(std::string("SELECT count(*) FROM commands WHERE ") + where)[0].as<std::int64_t>();
    };
    const auto restart = Clock::now();
    platform.StartEdge();
    r.reconnect_s = Seconds(Clock::now() - restart);
    if (WaitFor([&] { return count("state >= 4") >= n; }, std::chrono::seconds(300))) {
      r.drain_s = Seconds(Clock::now() - restart);
    }
    r.ended = count("state >= 4");
    r.succeeded = count("state = 4");
    FinishSim(*sim, report, true, std::chrono::seconds(30));
  }
  DropDatabase(pg, url);
  return r;
}

// "5,6,7" → {5, 6, 7} (sorted, each once).
std::set<int> ParseIntSet(const std::string& list) {
  std::set<int> out;
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.insert(std::stoi(item));
  }
  return out;
}

}  // namespace

// (12) The rules engine in process: 100 rules (a level over two keys with a 30 s duration
// and a clear, as a site's rules are) over the readings of many devices, one Process call per
// rule and reading; the ceiling is the same conditions written as C++ (no language, no
// state), over the same readings in the same run.
struct RuleCostResult {
  double engine_ns = 0;  // per rule and reading
  double native_ns = 0;
  std::size_t evaluations = 0;
  std::size_t transitions = 0;
};

RuleCostResult RuleCost(int rule_count, int devices, int readings_per_device) {
  using strata::rules::Value;
  std::vector<strata::rules::Rule> rules;
  std::vector<std::pair<double, double>> limits;
  for (int i = 0; i < rule_count; ++i) {
    const double t = 80.0 + (i % 20), v = 3.0 + (i % 5) * 0.5;
    strata::rules::RuleDefinition d;
    d.alarm_type = "rule-" + std::to_string(i);
    d.raise = {{strata::rules::Severity::kMajor, "temperature > " + Fmt(t, 1) + " || vibration > " + Fmt(v, 1)}};
    d.clear = "temperature < " + Fmt(t - 5.0, 1) + " && vibration < " + Fmt(v - 1.0, 1);
    d.for_ms = 30000;
    auto r = strata::rules::Rule::Compile(std::move(d));
    if (!r.ok()) throw std::runtime_error("(12): " + r.status().ToString());
    rules.push_back(std::move(*r));
    limits.emplace_back(t, v);
  }
  std::vector<strata::rules::Reading> readings;
  readings.reserve(static_cast<std::size_t>(devices) * readings_per_device);
  for (int k = 0; k < readings_per_device; ++k) {
    for (int dev = 0; dev < devices; ++dev) {
      // Runs of 40 readings above and below the limits (each device shifted), with noise.
      const bool hot = ((k + dev) / 40) % 2 == 1;
      const double temp = (hot ? 92.0 : 70.0) + ((k * 7 + dev * 13) % 5);
      const double vib = (hot ? 5.0 : 1.0) + ((k * 3 + dev) % 5) / 10.0;
      readings.push_back({"dev-" + std::to_string(dev), 1767225600000 + k * 1000LL,
                          {{"temperature", Value::Double(temp)}, {"vibration", Value::Double(vib)},
                           {"humidity", Value::Double(45.0)}},
                          Value::Null()});
    }
  }
  RuleCostResult out;
  std::vector<strata::rules::RuleState> states(rules.size());
  const auto t0 = Clock::now();
  for (const auto& reading : readings) {
    for (std::size_t i = 0; i < rules.size(); ++i) out.transitions += rules[i].Process(states[i], reading).size();
  }
  const auto t1 = Clock::now();
  volatile std::size_t sink = 0;
  for (const auto& reading : readings) {
    const double temp = reading.values[0].second.double_value(), vib = reading.values[1].second.double_value();
    for (const auto& [t, v] : limits) sink = sink + ((temp > t || vib > v) ? 1 : (temp < t - 5.0 && vib < v - 1.0) ? 2 : 0);
  }
  const auto t2 = Clock::now();
  out.evaluations = readings.size() * rules.size();
  out.engine_ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(out.evaluations);
  out.native_ns = std::chrono::duration<double, std::nano>(t2 - t1).count() / static_cast<double>(out.evaluations);
  return out;
}

int main(int argc, char** argv) {
  bool smoke = false;
  std::string output;
  std::set<int> only;
  double platform_rate = 0;
  std::vector<double> ladder_flag;
  {
    CLI::App app{"strata_bench: each hop of the data path against the raw ceiling of the same component, "
                 "in the same run, with real processes; prints one Markdown table"};
    std::string only_flag;
    std::string ladder_text;
    app.add_flag("--smoke", smoke, "Every measurement on a small load (CI: the harness works, figures are positive)");
    app.add_option("--output", output, "Also write the table to FILE");
    app.add_option("--only", only_flag, "Run only these measurements, e.g. 5,6,7 (default: all)");
    app.add_option("--platform-rate", platform_rate,
                   "Rate (msg/s) whose half (6) and (7) run at when (5) is not run")
        ->check(CLI::PositiveNumber);
    app.add_option("--ladder", ladder_text, "Replace (5)'s ladder of rates, e.g. 7500 or 5000,6000");
    try {
      app.parse(argc, argv);
      only = ParseIntSet(only_flag);
      for (int rate : ParseIntSet(ladder_text)) ladder_flag.push_back(rate);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    } catch (const std::logic_error&) {  // std::stoi on a list item
      std::cerr << "strata_bench: --only and --ladder take comma-separated integers\n";
      return 2;
    }
  }
  auto want = [&](int item) { return only.empty() || only.count(item) > 0; };
  const int messages = smoke ? 3000 : 200000;
  const int readings_n = smoke ? 9000 : 600000;
  TempDir dir;
  std::vector<Row> rows;
  // Each row also goes to stderr as soon as it is measured, so a long run that is cut short
  // still leaves its figures in the log.
  auto add = [&rows](Row row) {
    std::cerr << "  | " << row.what << " | " << row.figure << " | " << row.ratio << " | " << row.target << " |\n";
    rows.push_back(std::move(row));
  };
  bool ok = true;
  try {
    double broker_q1 = 0;
    if (want(1)) {
      std::cerr << "(1) broker ceiling...\n";
      broker_q1 = BrokerCeiling(dir.path(), messages, 1);
      const double broker_q0 = BrokerCeiling(dir.path(), messages, 0);
      add({"1. mosquitto → bare subscriber, QoS 1", Fmt(broker_q1) + " msg/s", "", "ceiling"});
      add({"1. mosquitto → bare subscriber, QoS 0", Fmt(broker_q0) + " msg/s", "", "ceiling"});
      ok = ok && broker_q1 > 0 && broker_q0 > 0;
    }

    if (want(2) || want(8)) {
      std::cerr << "(2) edge ingest...\n";
      const EdgeIngest edge = EdgeIngestRate(dir.path(), messages, 1);
      if (want(2)) {
        add({"2. strata-edge ingest, uplink down, QoS 1", Fmt(edge.msgs_per_s) + " msg/s",
                        broker_q1 > 0 ? Fmt(edge.msgs_per_s / broker_q1, 2) + " of (1) QoS 1" : "", "≥ 0.8"});
      }
      if (want(8)) {
        add({"8. strata-edge RSS idle", Fmt(edge.rss_idle, 1) + " MiB (anonymous " + Fmt(edge.rss_idle_anon, 1) +
                                                       ", mapped files " + Fmt(edge.rss_idle_file, 1) + ")",
                        "", "≤ 15 MiB"});
        add({"8. strata-edge RSS peak during (2)", Fmt(edge.rss_peak, 1) + " MiB", "", "≤ 64 MiB"});
      }
      ok = ok && edge.msgs_per_s > 0 && edge.rss_idle > 0;
    }

    std::unique_ptr<PgServer> pg;
    auto postgres = [&]() -> PgServer& {
      if (!pg) pg = std::make_unique<PgServer>(PgServer::Durability::kDurable);
      return *pg;
    };
    if (want(3) || want(4)) {
      std::cerr << "(3, 4) database ceiling and cloud ingest...\n";
      const std::string url = postgres().CreateDatabase();
      const auto readings = MakeReadings(readings_n);
      const unsigned short grpc = FreePort(), http = FreePort();
      auto cloud = StartCloud(url, dir.path(), grpc, http);  // applies the schema
      const double cloud_rate = CloudIngest("127.0.0.1:" + std::to_string(grpc), readings);
      cloud->Stop(SIGTERM);
      const double copy_rate = DatabaseCeiling(url, readings);
      add({"3. COPY into the telemetry table", Fmt(copy_rate) + " rows/s", "", "ceiling"});
      add({"4. strata-cloud EdgeSync ingest on PostgreSQL", Fmt(cloud_rate) + " readings/s",
                      Fmt(cloud_rate / copy_rate, 2) + " of (3)", "≥ 0.7"});
      ok = ok && copy_rate > 0 && cloud_rate > 0;
    }

    if (want(8)) {
      std::cerr << "(8) edge backlog...\n";
      const int backlog = smoke ? 9000 : 1000000;
      const double backlog_rss = EdgeBacklogPeakRss(dir.path(), backlog);
      add({"8. strata-edge RSS peak, backlog of " + std::to_string(backlog) + " readings",
                      Fmt(backlog_rss, 1) + " MiB", "", "≤ 64 MiB"});
      ok = ok && backlog_rss > 0;
    }

    if (want(9)) {
      std::cerr << "(9) queries...\n";
      std::size_t loaded = 0;
      const auto [agg, latest] = QueryLatency(postgres().CreateDatabase(), dir.path(), smoke ? 10 : 3334, &loaded);
      add({"9. Aggregate, 1 key, 24 h in 1-min buckets, " + std::to_string(loaded) + " readings stored",
                      "p50 " + Fmt(agg.p50_ms, 1) + " ms, p99 " + Fmt(agg.p99_ms, 1) + " ms", "", "p50 ≤ 20 ms"});
      add({"9. Latest, each of 1,000 devices", "p50 " + Fmt(latest.p50_ms, 1) + " ms, p99 " +
                      Fmt(latest.p99_ms, 1) + " ms", "", ""});
      ok = ok && agg.p50_ms > 0 && latest.p50_ms > 0;
    }

    // (5)-(7): the whole platform. Smoke: two short rungs and a 5 s outage.
    const std::vector<double> ladder =
        !ladder_flag.empty() ? ladder_flag
        : smoke              ? std::vector<double>{500, 1000}
                             : std::vector<double>{2500, 5000, 7500, 10000, 12500, 15000, 17500, 20000, 25000};
    const double rung_s = smoke ? 5 : 60;
    const double target5 = 25000;
    // (6) and (7) run at half of (5): of this run's figure, else --platform-rate, else (5)'s
    // target (the top of the smoke ladder in smoke mode).
    std::string half_of = platform_rate > 0 ? Fmt(platform_rate) + " msg/s (--platform-rate)"
                                            : Fmt(smoke ? ladder.back() : target5) + " msg/s (target of (5); not run)";
    double r5 = platform_rate > 0 ? platform_rate : (smoke ? ladder.back() : target5);
    if (want(5)) {
      std::cerr << "(5) highest sustained rate through the whole platform...\n";
      const Ladder l = SustainedRate(postgres(), dir.path(), ladder, rung_s,
                                     std::chrono::seconds(10));
      std::string climbed;
      for (const auto& rung : l.rungs) {
        climbed += (climbed.empty() ? "" : ", ") + Fmt(rung.rate) + (rung.sustained ? " held" : " failed");
      }
      add({"5. whole platform on PostgreSQL, highest publish rate held " + Fmt(rung_s) +
                          " s, every reading stored once (QoS 1, 3 values, 1,000 devices)",
                      Fmt(l.sustained) + " msg/s (" + Fmt(3 * l.sustained) + " readings/s); ladder: " + climbed,
                      Fmt(l.sustained / target5, 2) + " of target" +
                          (broker_q1 > 0 ? ", " + Fmt(l.sustained / broker_q1, 2) + " of (1) QoS 1" : ""),
                      "≥ 25000 msg/s"});
      for (const auto& rung : l.rungs) {
        if (rung.rate != l.sustained && rung.sustained) continue;
        add({"5. CPU while strata-sim publishes " + Fmt(rung.rate) + " msg/s (" +
                 (rung.sustained ? "highest rate held" : "first rate not held") + "), cores of " +
                 std::to_string(std::thread::hardware_concurrency()),
             rung.cpu.Text(), "", ""});
      }
      if (!l.rungs.empty() && !l.rungs.back().sustained) {
        const Rung& f = l.rungs.back();
        add({"5. first rate not held: " + Fmt(f.rate) + " msg/s", f.why, "", ""});
      }
      if (l.sustained > 0) {
        r5 = l.sustained;
        half_of = Fmt(l.sustained) + " msg/s of (5)";
      } else {
        r5 = ladder.front();
        half_of = Fmt(ladder.front()) + " msg/s (the lowest rung: (5) held none)";
      }
      ok = ok && l.sustained > 0;
    }
    const double half = r5 / 2;

    if (want(6)) {
      std::cerr << "(6) publish → Latest latency at " << Fmt(half) << " msg/s...\n";
      const std::string batch_max = EdgeDefault(dir.path(), "batch-max");
      const std::string linger = EdgeDefault(dir.path(), "batch-linger-ms");
      const auto p = ProbeLatency(postgres(), dir.path(), half, smoke ? 3 : 60);
      add({"6. probe publish → visible in Latest (gRPC), 1 probe per 100 ms while strata-sim publishes " +
                          Fmt(half) + " msg/s (half of " + half_of + "); edge defaults: batches of ≤ " + batch_max +
                          " readings, linger ≤ " + linger + " ms",
                      "p50 " + Fmt(p.latency.p50_ms, 1) + " ms, p99 " + Fmt(p.latency.p99_ms, 1) + " ms (" +
                          std::to_string(p.samples) + " probes, " + std::to_string(p.timeouts) +
                          " not visible within 5 s; strata-sim published " + Fmt(p.sim_rate) + " msg/s)",
                      "", "p99 ≤ 100 ms"});
      ok = ok && p.samples > 0 && p.latency.p50_ms > 0;
    }

    if (want(7)) {
      const double outage = smoke ? 5 : 300;
      std::cerr << "(7) backlog drain after a " << Fmt(outage) << " s outage at " << Fmt(half) << " msg/s...\n";
      const auto d = BacklogDrain(postgres(), dir.path(), half, outage);
      const double steady = 3 * half;
      const std::string restart = "cloud ready after " + Fmt(d.cloud_ready_s, 1) + " s, edge reconnected after " +
                                  (d.reconnect_s < 0 ? std::string("never") : Fmt(d.reconnect_s, 1) + " s");
      add({"7. backlog drain: strata-cloud stopped " + Fmt(outage) + " s, then restarted, while strata-sim "
                          "publishes " + Fmt(half) + " msg/s (half of " + half_of + ")",
                      d.drain_s < 0
                          ? "not drained within " + Fmt(d.drain_deadline_s) + " s of the restart: buffer " +
                                Fmt(d.backlog_at_restart) + " → " + Fmt(d.backlog_at_end) + " readings; " + restart +
                                "; acknowledged " + Fmt(d.acked_rate) + " readings/s"
                          : Fmt(d.backlog_at_restart) + " readings backlog drained in " + Fmt(d.drain_s, 1) + " s (" +
                                restart + "): " + Fmt(d.drain_rate) + " readings/s",
                      d.drain_s < 0 ? Fmt(d.acked_rate / steady, 2) + "× the steady " + Fmt(steady) +
                                          " readings/s (acknowledged)"
                                    : Fmt(d.drain_rate / steady, 2) + "× the steady " + Fmt(steady) + " readings/s",
                      "≥ 3×"});
      const bool verified = d.unacked <= 0;
      const bool once = verified && d.stored.rows == static_cast<std::int64_t>(d.expected) &&
                        d.stored.distinct == d.stored.rows && d.dropped == 0;
      add({"7. exactly once after the outage",
                      "stored " + std::to_string(d.stored.rows) + " rows (" + std::to_string(d.stored.distinct) +
                          " distinct) of " + std::to_string(d.expected) + " published readings; edge dropped " +
                          Fmt(d.dropped) + (verified ? "" : "; " + Fmt(d.unacked) + " still unacknowledged"),
                      "",
                      "equal, 0 dropped: " +
                          std::string(once ? "met" : verified ? "**missed**" : "not verified (backlog not drained)")});
      ok = ok && d.drain_s > 0 && once;
    }
    if (want(10)) {
      std::cerr << "(10) command round trip at " << Fmt(half) << " msg/s...\n";
      const auto c = CommandLatency(postgres(), dir.path(), half, smoke ? 3 : 60);
      add({"10. command round trip: SendCommand → device reply → GetCommand shows SUCCEEDED, 1 command per 100 ms "
           "while strata-sim publishes " + Fmt(half) + " msg/s (half of " + half_of + ")",
           "p50 " + Fmt(c.command.p50_ms, 1) + " ms, p99 " + Fmt(c.command.p99_ms, 1) + " ms (" +
               std::to_string(c.samples) + " commands, " + std::to_string(c.timeouts) +
               " not ended within 5 s; strata-sim published " + Fmt(c.sim_rate) + " msg/s)",
           "raw MQTT request/response (QoS 0) through the same broker: p50 " + Fmt(c.mqtt.p50_ms, 2) + " ms, p99 " +
               Fmt(c.mqtt.p99_ms, 2) + " ms",
           "p99 ≤ 1000 ms"});
      ok = ok && c.samples > 0 && c.timeouts == 0;
    }
    if (want(11)) {
      const int n = smoke ? 500 : 10000;
      std::cerr << "(11) " << n << " queued commands drain after the edge reconnects, at " << Fmt(half)
                << " msg/s...\n";
      const auto d = CommandDrain(postgres(), dir.path(), half, n);
      add({"11. " + std::to_string(n) + " commands queued while the edge was stopped (10 per device), then the edge "
           "started, while strata-sim publishes " + Fmt(half) + " msg/s",
           d.drain_s < 0 ? "not drained within 300 s: " + std::to_string(d.ended) + " ended"
                         : "all ended " + Fmt(d.drain_s, 1) + " s after the edge started (" +
                               Fmt(d.queued / d.drain_s) + " commands/s; " + std::to_string(d.succeeded) +
                               " SUCCEEDED; queueing them took " + Fmt(d.queue_s, 1) + " s)",
           d.drain_s < 0 ? "" : Fmt((d.queued / d.drain_s) / d.mqtt_rate, 2) + " of the raw MQTT request/response "
                                "rate (QoS 0: " + Fmt(d.mqtt_rate) + "/s, 1,000 outstanding)",
           "≤ 60 s"});
      ok = ok && d.drain_s > 0 && d.succeeded == d.queued;
    }
    if (want(13)) {
      std::cerr << "(13) edge ingest with 100 edge rules...\n";
      const auto e = EdgeIngestWithRules(dir.path(), messages, 100);
      add({"13. strata-edge ingest with 100 EDGE rules over 1,000 devices, uplink down, QoS 1",
           Fmt(e.msgs_per_s) + " msg/s (" + Fmt(e.evaluations) + " rule evaluations, " + Fmt(e.transitions) +
               " transitions)",
           broker_q1 > 0 ? Fmt(e.msgs_per_s / broker_q1, 2) + " of (1) QoS 1" : "", "≥ 0.8"});
      ok = ok && e.msgs_per_s > 0 && e.evaluations >= 100.0 * messages;
    }
    if (want(12)) {
      const int devices = smoke ? 50 : 1000, per_device = 100;
      std::cerr << "(12) 100 rules over " << devices * per_device << " readings in process...\n";
      const auto c = RuleCost(100, devices, per_device);
      add({"12. the rules engine in process: 100 rules (two keys, a 30 s duration, a clear) over " +
               std::to_string(devices * per_device) + " readings of " + std::to_string(devices) + " devices",
           Fmt(c.engine_ns, 0) + " ns per rule and reading (" + Fmt(100 * c.engine_ns / 1000.0, 1) +
               " µs per reading for all 100; " + std::to_string(c.transitions) + " transitions)",
           Fmt(c.native_ns / c.engine_ns, 3) + " of the same conditions in C++ (" + Fmt(c.native_ns, 1) +
               " ns, no language and no state)",
           "(13) is the edge ingest with them"});
      ok = ok && c.engine_ns > 0 && c.transitions > 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "strata_bench: " << e.what() << "\n";
    ok = false;
  }

  // Rows in measurement order ("5. ..." before "8. ..."), whatever order they ran in.
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return std::stoi(a.what) < std::stoi(b.what); });

  std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream md;
  md << "Run: " << date << (smoke ? " (smoke load)" : "") << "; machine: " << MachineLine() << "; load: " << messages
     << " messages of 3 values over 1,000 device topics; " << readings_n << " readings for (3) and (4).\n\n";
  md << "| measurement | figure | ratio | target |\n|---|---|---|---|\n";
  for (const auto& r : rows) md << "| " << r.what << " | " << r.figure << " | " << r.ratio << " | " << r.target << " |\n";
  std::cout << md.str();
  if (!output.empty()) std::ofstream(output) << md.str();
  if (!ok) {
    std::cerr << "strata_bench: FAILED\n";
    return 1;
  }
  return 0;
}
