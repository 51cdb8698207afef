// strata_bench: measures each hop of the data path against the raw ceiling of the same
// component, in the same run, with real processes (mosquitto, PostgreSQL, strata-edge,
// strata-cloud, strata-sim), and prints one Markdown table.
//
//   strata_bench [--smoke] [--output FILE]
//
// --smoke runs every measurement on a small load (CI checks that the harness works and
// every figure is positive); without it the loads are the ones docs/benchmarks.md reports.
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <mqtt/async_client.h>
#include <pqxx/pqxx>

#include "strata/v1/edgesync.grpc.pb.h"
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

// Resident set size of a process in MiB.
double RssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      double kb = 0;
      in >> kb;
      return kb / 1024.0;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

std::vector<std::string> SimArgs(const std::string& url, int count, int qos, const std::string& client) {
  // Manufacturing devices send three values per message, about 110 bytes of JSON.
  return {STRATA_SIM_BIN, "--mqtt-url", url, "--scenarios", "manufacturing", "--devices", "1000", "--rate", "0",
          "--count", std::to_string(count), "--qos", std::to_string(qos), "--seed", "42", "--client-id", client,
          "--max-inflight", "1000", "--start-ts", "1700000000000", "--step-ms", "1"};
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
    req.set_function(strata::v1::AVG);
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

// (4) A synthetic edge streaming batches of 1,000 over EdgeSync, window of 8.
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
  for (std::size_t i = 0; i < readings.size(); i += 1000) {
    strata::v1::EdgeMessage m;
    auto* b = m.mutable_batch();
    b->set_first_seq(seq + 1);
    for (std::size_t j = i; j < std::min(readings.size(), i + 1000); ++j) {
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

std::string Fmt(double v, int precision = 0) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
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

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  std::string output;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--smoke") smoke = true;
    if (a == "--output" && i + 1 < argc) output = argv[++i];
  }
  const int messages = smoke ? 3000 : 200000;
  const int readings_n = smoke ? 9000 : 600000;
  TempDir dir;
  std::vector<Row> rows;
  bool ok = true;
  try {
    std::cerr << "(1) broker ceiling...\n";
    const double broker_q1 = BrokerCeiling(dir.path(), messages, 1);
    const double broker_q0 = BrokerCeiling(dir.path(), messages, 0);
    rows.push_back({"1. mosquitto → bare subscriber, QoS 1", Fmt(broker_q1) + " msg/s", "", "ceiling"});
    rows.push_back({"1. mosquitto → bare subscriber, QoS 0", Fmt(broker_q0) + " msg/s", "", "ceiling"});

    std::cerr << "(2) edge ingest...\n";
    const EdgeIngest edge = EdgeIngestRate(dir.path(), messages, 1);
    rows.push_back({"2. strata-edge ingest, uplink down, QoS 1", Fmt(edge.msgs_per_s) + " msg/s",
                    Fmt(edge.msgs_per_s / broker_q1, 2) + " of (1) QoS 1", "≥ 0.8"});
    ok = ok && edge.msgs_per_s > 0;

    std::cerr << "(3, 4) database ceiling and cloud ingest...\n";
    PgServer pg;
    const std::string url = pg.CreateDatabase();
    const auto readings = MakeReadings(readings_n);
    const unsigned short grpc = FreePort(), http = FreePort();
    auto cloud = StartCloud(url, dir.path(), grpc, http);  // applies the schema
    const double cloud_rate = CloudIngest("127.0.0.1:" + std::to_string(grpc), readings);
    cloud->Stop(SIGTERM);
    const double copy_rate = DatabaseCeiling(url, readings);
    rows.push_back({"3. COPY into the telemetry table", Fmt(copy_rate) + " rows/s", "", "ceiling"});
    rows.push_back({"4. strata-cloud EdgeSync ingest on PostgreSQL", Fmt(cloud_rate) + " readings/s",
                    Fmt(cloud_rate / copy_rate, 2) + " of (3)", "≥ 0.7"});
    rows.push_back({"8. strata-edge RSS idle", Fmt(edge.rss_idle, 1) + " MiB", "", "≤ 15 MiB"});
    rows.push_back({"8. strata-edge RSS peak during (2)", Fmt(edge.rss_peak, 1) + " MiB", "", "≤ 64 MiB"});
    ok = ok && broker_q1 > 0 && broker_q0 > 0 && copy_rate > 0 && cloud_rate > 0 && edge.rss_idle > 0;

    std::cerr << "(8) edge backlog...\n";
    const int backlog = smoke ? 9000 : 1000000;
    const double backlog_rss = EdgeBacklogPeakRss(dir.path(), backlog);
    rows.push_back({"8. strata-edge RSS peak, backlog of " + std::to_string(backlog) + " readings",
                    Fmt(backlog_rss, 1) + " MiB", "", "≤ 64 MiB"});

    std::cerr << "(9) queries...\n";
    std::size_t loaded = 0;
    const auto [agg, latest] = QueryLatency(pg.CreateDatabase(), dir.path(), smoke ? 10 : 3334, &loaded);
    rows.push_back({"9. Aggregate, 1 key, 24 h in 1-min buckets, " + std::to_string(loaded) + " readings stored",
                    "p50 " + Fmt(agg.p50_ms, 1) + " ms, p99 " + Fmt(agg.p99_ms, 1) + " ms", "", "p50 ≤ 20 ms"});
    rows.push_back({"9. Latest, each of 1,000 devices", "p50 " + Fmt(latest.p50_ms, 1) + " ms, p99 " +
                    Fmt(latest.p99_ms, 1) + " ms", "", ""});
    ok = ok && backlog_rss > 0 && agg.p50_ms > 0 && latest.p50_ms > 0;
  } catch (const std::exception& e) {
    std::cerr << "strata_bench: " << e.what() << "\n";
    ok = false;
  }

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
