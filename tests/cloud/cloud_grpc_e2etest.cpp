// gRPC API of a running strata-cloud: registry and telemetry through generated stubs, the
// health service, and the edge hub's exactly-once rule (repeated batches, a crash between
// commit and ack).
#include <sys/wait.h>

#include <chrono>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <nlohmann/json.hpp>

#include "support/cloud_process.h"
#include "support/metrics_text.h"
#include "strata/v1/edgesync.grpc.pb.h"
#include "strata/v1/registry.grpc.pb.h"
#include "strata/v1/telemetry.grpc.pb.h"

namespace strata::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kT0 = 1700000000000;

class CloudGrpcTest : public CloudTest {
 protected:
  void SetUp() override {
    CloudTest::SetUp();
    ASSERT_NE(cloud_, nullptr);
    registry_ = v1::DeviceRegistry::NewStub(cloud_->Channel());
    telemetry_ = v1::Telemetry::NewStub(cloud_->Channel());
  }

  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return ctx;
  }

  std::vector<v1::Reading> AllReadings(const std::string& device) {
    v1::QueryTelemetryRequest q;
    q.set_device_id(device);
    q.set_limit(10000);
    v1::QueryTelemetryResponse r;
    auto s = telemetry_->Query(Ctx().get(), q, &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {r.readings().begin(), r.readings().end()};
  }

  std::unique_ptr<v1::DeviceRegistry::Stub> registry_;
  std::unique_ptr<v1::Telemetry::Stub> telemetry_;
};

TEST_P(CloudGrpcTest, RegistryAndTelemetryThroughStubs) {
  v1::CreateDeviceRequest create;
  create.mutable_device()->set_device_id("g-1");
  create.mutable_device()->set_type("meter");
  v1::Device device;
  ASSERT_TRUE(registry_->CreateDevice(Ctx().get(), create, &device).ok());
  EXPECT_EQ(device.tenant_id(), "default");
  EXPECT_GT(device.created_at(), 0);

  v1::GetDeviceRequest get;
  get.set_device_id("nope");
  auto missing = registry_->GetDevice(Ctx().get(), get, &device);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::WriteTelemetryRequest write;
  write.set_device_id("g-1");
  for (int i = 0; i < 5; ++i) {
    auto* p = write.add_points();
    p->set_ts(kT0 + i);
    (*p->mutable_values())["power"].set_double_value(100.25 + i);
  }
  v1::WriteTelemetryResponse written;
  ASSERT_TRUE(telemetry_->Write(Ctx().get(), write, &written).ok());
  EXPECT_EQ(written.written(), 5);

  // Paging through five readings two at a time.
  v1::QueryTelemetryRequest q;
  q.set_device_id("g-1");
  q.set_limit(2);
  std::vector<std::int64_t> seen;
  for (int page = 0; page < 5; ++page) {
    v1::QueryTelemetryResponse r;
    ASSERT_TRUE(telemetry_->Query(Ctx().get(), q, &r).ok());
    for (const auto& reading : r.readings()) seen.push_back(reading.ts());
    if (r.next_page_token().empty()) break;
    q.set_page_token(r.next_page_token());
  }
  EXPECT_EQ(seen, (std::vector<std::int64_t>{kT0, kT0 + 1, kT0 + 2, kT0 + 3, kT0 + 4}));

  v1::AggregateTelemetryRequest agg;
  agg.set_device_id("g-1");
  agg.add_keys("power");
  agg.set_start(kT0);
  agg.set_end(kT0 + 5);
  agg.set_interval(1);
  agg.set_function(v1::AGGREGATION_FUNCTION_MAX);
  v1::AggregateTelemetryResponse aggr;
  ASSERT_TRUE(telemetry_->Aggregate(Ctx().get(), agg, &aggr).ok());
  ASSERT_EQ(aggr.series_size(), 1);
  ASSERT_EQ(aggr.series(0).buckets_size(), 5);
  EXPECT_DOUBLE_EQ(aggr.series(0).buckets(4).value(), 104.25);

  agg.set_end(kT0 - 1);
  EXPECT_EQ(telemetry_->Aggregate(Ctx().get(), agg, &aggr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // grpc.health.v1.Health/Check, spoken in raw bytes (Debian ships no generated health
  // stubs): an empty HealthCheckRequest asks about the whole server, and the answer
  // HealthCheckResponse{status: SERVING} encodes as field 1, varint 1.
  grpc::GenericStub generic(cloud_->Channel());
  grpc::Slice empty(std::string{});
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  auto ctx = Ctx();
  generic.UnaryCall(ctx.get(), "/grpc.health.v1.Health/Check", {}, &request, &response,
                    [&](grpc::Status s) { done.set_value(std::move(s)); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "SERVING";
}

// A synchronous EdgeSync client for the tests.
class EdgeStream {
 public:
  EdgeStream(std::shared_ptr<grpc::Channel> channel, const std::string& edge_id, std::uint32_t version = 1) {
    stub_ = v1::EdgeSync::NewStub(channel);
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Connect(&ctx_);
    v1::EdgeMessage hello;
    hello.mutable_hello()->set_edge_id(edge_id);
    hello.mutable_hello()->set_protocol_version(version);
    EXPECT_TRUE(stream_->Write(hello));
    v1::CloudMessage welcome;
    EXPECT_TRUE(stream_->Read(&welcome));
    EXPECT_TRUE(welcome.has_welcome());
    mark = welcome.welcome().high_water_mark();
    version_used = welcome.welcome().protocol_version();
  }
  bool Write(const v1::EdgeMessage& m) { return stream_->Write(m); }
  // Sends the batch; returns the ack, or nullopt if the stream broke first.
  std::optional<v1::BatchAck> Send(const v1::TelemetryBatch& batch) {
    v1::EdgeMessage m;
    *m.mutable_batch() = batch;
    if (!stream_->Write(m)) return std::nullopt;
    v1::CloudMessage reply;
    if (!stream_->Read(&reply) || !reply.has_ack()) return std::nullopt;
    return reply.ack();
  }
  // Sends without waiting for the ack.
  bool Post(const v1::TelemetryBatch& batch) {
    v1::EdgeMessage m;
    *m.mutable_batch() = batch;
    return stream_->Write(m);
  }
  std::optional<v1::CloudMessage> Next() {
    v1::CloudMessage reply;
    if (!stream_->Read(&reply)) return std::nullopt;
    return reply;
  }
  std::optional<v1::BatchAck> NextAck() {
    v1::CloudMessage reply;
    if (!stream_->Read(&reply) || !reply.has_ack()) return std::nullopt;
    return reply.ack();
  }
  grpc::Status Close() {
    stream_->WritesDone();
    v1::CloudMessage ignored;
    while (stream_->Read(&ignored)) {
    }
    return stream_->Finish();
  }

  std::uint64_t mark = 0;
  std::uint32_t version_used = 0;

 private:
  std::unique_ptr<v1::EdgeSync::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::EdgeMessage, v1::CloudMessage>> stream_;
};

v1::TelemetryBatch MakeBatch(std::uint64_t first, std::uint64_t last, const std::string& device) {
  v1::TelemetryBatch b;
  b.set_first_seq(first);
  b.set_last_seq(last);
  for (auto seq = first; seq <= last; ++seq) {
    auto* r = b.add_readings();
    r->set_seq(seq);
    r->set_device_id(device);
    r->set_key("level");
    r->set_ts(kT0 + static_cast<std::int64_t>(seq));
    r->mutable_value()->set_int_value(static_cast<std::int64_t>(seq * 10));
  }
  return b;
}

// The edge's config state as GET /v1/edges/{id} shows it.
nlohmann::json EdgeJson(const CloudProcess& cloud, const std::string& edge_id) {
  auto r = cloud.Http("GET", "/v1/edges/" + edge_id);
  EXPECT_EQ(r.status, 200) << r.body;
  return nlohmann::json::parse(r.body, nullptr, false);
}

v1::EdgeMessage ConfigAck(std::uint64_t revision, bool applied, const std::string& error = "") {
  v1::EdgeMessage m;
  m.mutable_config_ack()->set_revision(revision);
  m.mutable_config_ack()->set_applied(applied);
  m.mutable_config_ack()->set_error(error);
  return m;
}

TEST_P(CloudGrpcTest, AnEdgeShowsConnectedWithItsLagWhileItsStreamIsOpen) {
  ASSERT_EQ(cloud_->Http("POST", "/v1/edges", R"({"edge_id":"gw-lag"})").status, 200);
  EXPECT_EQ(EdgeJson(*cloud_, "gw-lag")["connected"], false);
  {
    EdgeStream edge(cloud_->Channel(), "gw-lag", 1);
    v1::EdgeMessage hb;
    hb.mutable_heartbeat()->set_sent_at(1);
    hb.mutable_heartbeat()->set_pending_readings(4200);
    hb.mutable_heartbeat()->set_oldest_pending_age_ms(1500);
    ASSERT_TRUE(edge.Write(hb));
    auto answer = edge.Next();  // the cloud answers a heartbeat once it is recorded
    ASSERT_TRUE(answer.has_value() && answer->has_heartbeat());
    const auto j = EdgeJson(*cloud_, "gw-lag");
    EXPECT_EQ(j["connected"], true);
    EXPECT_EQ(j["pending_readings"], "4200");
    EXPECT_EQ(j["oldest_pending_age_ms"], "1500");
    // A second session takes over; the first one's end does not make the edge look offline.
    EdgeStream newer(cloud_->Channel(), "gw-lag", 1);
    EXPECT_FALSE(edge.Close().ok());
    EXPECT_EQ(EdgeJson(*cloud_, "gw-lag")["connected"], true);
    EXPECT_TRUE(newer.Close().ok());
  }
  EXPECT_TRUE(WaitFor([&] { return EdgeJson(*cloud_, "gw-lag")["connected"] == false; }, std::chrono::seconds(5)));
}

TEST_P(CloudGrpcTest, VersionTwoCarriesConfigRevisionsDownAndTheirAcksUp) {
  // An edge of version 1 gets version 1 and no config: telemetry only, as before.
  {
    EdgeStream old(cloud_->Channel(), "gw-cfg", 1);
    EXPECT_EQ(old.version_used, 1u);
    auto ack = old.Send(MakeBatch(1, 2, "c1"));
    ASSERT_TRUE(ack.has_value()) << "the first reply to a version-1 edge is its ack, not a config";
    EXPECT_EQ(ack->last_seq(), 2u);
    EXPECT_TRUE(old.Close().ok());
  }
  // A later version than the cloud's is answered with the cloud's.
  EdgeStream edge(cloud_->Channel(), "gw-cfg", 9);
  EXPECT_EQ(edge.version_used, 6u);
  auto first = edge.Next();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->has_config()) << first->DebugString();
  // c1 was registered by the edge's batch above: it is the edge's device.
  ASSERT_EQ(first->config().devices_size(), 1);
  EXPECT_EQ(first->config().devices(0).device_id(), "c1");
  const std::uint64_t rev = first->config().revision();
  EXPECT_EQ(EdgeJson(*cloud_, "gw-cfg")["config_revision"], std::to_string(rev));

  // Refused: the reason is kept, nothing applied; the stream goes on.
  ASSERT_TRUE(edge.Write(ConfigAck(rev, false, "devices[0] is not wanted here")));
  // An ack for a revision never sent: counted, ignored, the stream goes on.
  ASSERT_TRUE(edge.Write(ConfigAck(rev + 50, true)));
  auto batch_ack = edge.Send(MakeBatch(3, 3, "c1"));
  ASSERT_TRUE(batch_ack.has_value()) << "still serving after a refused and a bogus ack";
  auto j = EdgeJson(*cloud_, "gw-cfg");
  EXPECT_EQ(j["config_error"], "revision " + std::to_string(rev) + ": devices[0] is not wanted here");
  EXPECT_EQ(j["applied_revision"], "0");
  EXPECT_EQ(MetricSample(cloud_->Http("GET", "/metrics").body, "strata_cloud_edge_config_acks_total{result=\"invalid\"}"),
            1);

  // A new device of the edge makes the next revision, which arrives within the poll interval.
  ASSERT_EQ(cloud_->Http("POST", "/v1/devices", R"({"device_id":"c2","edge_id":"gw-cfg","type":"valve"})").status, 200);
  auto next = edge.Next();
  ASSERT_TRUE(next.has_value());
  ASSERT_TRUE(next->has_config()) << next->DebugString();
  EXPECT_GT(next->config().revision(), rev);
  ASSERT_EQ(next->config().devices_size(), 2);
  EXPECT_EQ(next->config().devices(1).device_id(), "c2");
  EXPECT_EQ(next->config().devices(1).type(), "valve");
  ASSERT_TRUE(edge.Write(ConfigAck(next->config().revision(), true)));
  ASSERT_TRUE(edge.Send(MakeBatch(4, 4, "c1")).has_value());  // acks are taken in order
  j = EdgeJson(*cloud_, "gw-cfg");
  EXPECT_EQ(j["applied_revision"], std::to_string(next->config().revision()));
  EXPECT_EQ(j["config_error"], "");
  EXPECT_NE(j["applied_at"], "0");
  EXPECT_TRUE(edge.Close().ok());
}

TEST_P(CloudGrpcTest, EdgeAlarmsAreCheckedAppliedOnceAndAlwaysAcked) {
  for (const auto& [device, edge] : {std::pair{"al-1", "gw-alarm"}, std::pair{"al-else", "gw-else"}}) {
    v1::CreateDeviceRequest create;
    create.mutable_device()->set_device_id(device);
    create.mutable_device()->set_edge_id(edge);
    v1::Device created;
    ASSERT_TRUE(registry_->CreateDevice(Ctx().get(), create, &created).ok());
  }
  auto rule = cloud_->Http("POST", "/v1/rules", R"({"rule_id":"hot","location":"EDGE","alarm_type":"hot",
      "raise":[{"severity":"MAJOR","condition":"t > 1.0"}]})");
  ASSERT_EQ(rule.status, 200) << rule.body;
  const std::int64_t updated_at = std::stoll(cloud_->Json(rule)["evaluated_since"].get<std::string>());
  EdgeStream edge(cloud_->Channel(), "gw-alarm", 6);
  ASSERT_EQ(edge.version_used, 6u);
  // The revision carries the EDGE rule.
  auto first = edge.Next();
  ASSERT_TRUE(first && first->has_config());
  ASSERT_EQ(first->config().rules_size(), 1);
  EXPECT_EQ(first->config().rules(0).rule_id(), "hot");
  // Every alarm is acked with the edge's mark, whatever became of it.
  auto send = [&](std::uint64_t seq, const std::string& kind, const std::string& device, std::int64_t rule_at,
                  const std::string& values, std::uint64_t want_mark) {
    v1::EdgeMessage m;
    auto* a = m.mutable_alarm();
    a->set_seq(seq);
    a->set_rule_id("hot");
    a->set_device_id(device);
    a->set_alarm_type("hot");
    a->set_kind(kind);
    a->set_severity(v1::ALARM_SEVERITY_MAJOR);
    a->set_ts(1767225600000 + static_cast<std::int64_t>(seq));
    a->set_values_json(values);
    a->set_rule_updated_at(rule_at);
    EXPECT_TRUE(edge.Write(m));
    for (auto next = edge.Next(); next; next = edge.Next()) {
      if (!next->has_alarm_ack()) continue;
      EXPECT_EQ(next->alarm_ack().seq(), want_mark) << "seq " << seq;
      return;
    }
    ADD_FAILURE() << "no ack for seq " << seq;
  };
  send(1, "RAISED", "al-1", updated_at, R"({"t":2})", 1);
  send(1, "RAISED", "al-1", updated_at, R"({"t":2})", 1);          // again: a duplicate
  send(2, "BOGUS", "al-1", updated_at, "{}", 2);                   // no such kind
  send(3, "RAISED", "al-else", updated_at, "{}", 3);               // a device of another edge
  send(4, "RAISED", "al-1", updated_at - 1, "{}", 4);              // of the rule as it was: stale
  send(5, "RAISED", "al-1", updated_at, "[1]", 5);                 // values not an object
  send(6, "CLEARED", "al-1", updated_at, "{}", 6);
  const std::string metrics = cloud_->Http("GET", "/metrics").body;
  auto outcome = [&](const std::string& o) {
    return MetricSample(metrics, "strata_cloud_edge_alarms_total{outcome=\"" + o + "\"}");
  };
  EXPECT_EQ(outcome("applied"), 2);
  EXPECT_EQ(outcome("duplicate"), 1);
  EXPECT_EQ(outcome("invalid"), 3);
  EXPECT_EQ(outcome("stale"), 1);
  auto alarms = cloud_->Json(cloud_->Http("GET", "/v1/alarms?device_id=al-1"))["alarms"];
  ASSERT_EQ(alarms.size(), 1u) << alarms.dump();
  EXPECT_EQ(alarms[0]["status"], "ALARM_STATUS_CLEARED_UNACK");
  EXPECT_EQ(alarms[0]["start_ts"], "1767225600001");
  EXPECT_EQ(alarms[0]["end_ts"], "1767225600006");
  EXPECT_TRUE(edge.Close().ok());
}

TEST_P(CloudGrpcTest, ReportedTwinsFromAnEdgeAreCheckedStoredOnceAndAlwaysAcked) {
  for (const auto& [device, edge] : {std::pair{"tw-1", "gw-twin"}, std::pair{"tw-else", "gw-else"}}) {
    v1::CreateDeviceRequest create;
    create.mutable_device()->set_device_id(device);
    create.mutable_device()->set_edge_id(edge);
    v1::Device created;
    ASSERT_TRUE(registry_->CreateDevice(Ctx().get(), create, &created).ok());
  }
  EdgeStream edge(cloud_->Channel(), "gw-twin", 4);
  ASSERT_EQ(edge.version_used, 4u);
  // Each report is acked by (device, seq), whatever became of it.
  auto report = [&](const std::string& device, const std::string& doc, std::uint64_t seq) {
    v1::EdgeMessage m;
    m.mutable_twin_reported()->set_device_id(device);
    m.mutable_twin_reported()->set_reported_json(doc);
    m.mutable_twin_reported()->set_seq(seq);
    EXPECT_TRUE(edge.Write(m));
    for (auto next = edge.Next(); next; next = edge.Next()) {
      if (!next->has_twin_reported_ack()) continue;  // the config revision, sent first
      EXPECT_EQ(next->twin_reported_ack().device_id(), device);
      EXPECT_EQ(next->twin_reported_ack().seq(), seq);
      return;
    }
    ADD_FAILURE() << "no ack for seq " << seq;
  };
  report("tw-1", R"({"rpm":1000})", 3);
  report("tw-1", R"({"rpm":999})", 3);     // again: stale
  report("tw-1", R"({"rpm":998})", 2);     // overtaken: stale
  report("tw-1", "[1]", 4);                // not an object
  report("tw-1", std::string(70000, ' ') + "{}", 5);  // too large
  report("tw-else", R"({"a":1})", 6);      // a device of another edge
  report("newcomer", R"({"a":1})", 7);     // unknown: registered for this edge, and stored
  const std::string metrics = cloud_->Http("GET", "/metrics").body;
  auto outcome = [&](const std::string& o) {
    return MetricSample(metrics, "strata_cloud_edge_twin_reports_total{outcome=\"" + o + "\"}");
  };
  EXPECT_EQ(outcome("stored"), 2);
  EXPECT_EQ(outcome("stale"), 2);
  EXPECT_EQ(outcome("invalid"), 2);
  EXPECT_EQ(outcome("unknown"), 1);
  EXPECT_TRUE(edge.Close().ok());
  EXPECT_EQ(cloud_->Json(cloud_->Http("GET", "/v1/devices/newcomer"))["edge_id"], "gw-twin");
  // An edge that said version 3 may not send them.
  EdgeStream older(cloud_->Channel(), "gw-twin", 3);
  v1::EdgeMessage m;
  m.mutable_twin_reported()->set_device_id("tw-1");
  m.mutable_twin_reported()->set_reported_json("{}");
  older.Write(m);
  EXPECT_EQ(older.Close().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(CloudGrpcTest, AConfigTooLargeForAnEdgeIsNotSentAndSaysWhy) {
  // 64 devices with 64 attributes of 4 KiB each: about 17 MB, above the 16 MiB cap.
  for (int d = 0; d < 64; ++d) {
    v1::CreateDeviceRequest create;
    create.mutable_device()->set_device_id("big-" + std::to_string(d));
    create.mutable_device()->set_edge_id("gw-big");
    for (int a = 0; a < 64; ++a) {
      (*create.mutable_device()->mutable_attributes())["a" + std::to_string(a)] = std::string(4096, 'x');
    }
    v1::Device created;
    ASSERT_TRUE(registry_->CreateDevice(Ctx().get(), create, &created).ok());
  }
  EdgeStream edge(cloud_->Channel(), "gw-big", 2);
  ASSERT_EQ(edge.version_used, 2u);
  // No config comes (the stream would break on it at the edge every time): the first answer
  // is the batch's ack, and the stream serves telemetry as usual.
  auto ack = edge.Send(MakeBatch(1, 1, "big-0"));
  ASSERT_TRUE(ack.has_value()) << "a config too large for the edge was sent, or the stream broke";
  const auto j = EdgeJson(*cloud_, "gw-big");
  EXPECT_NE(j["config_error"].get<std::string>().find("was not sent"), std::string::npos) << j.dump();
  EXPECT_EQ(j["applied_revision"], "0");
  EXPECT_TRUE(edge.Close().ok());
}

TEST_P(CloudGrpcTest, RepeatedBatchIsAckedButStoredOnce) {
  {
    EdgeStream edge(cloud_->Channel(), "gw-a");
    EXPECT_EQ(edge.mark, 0u);
    auto ack = edge.Send(MakeBatch(1, 3, "tank-1"));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->written(), 3u);
    EXPECT_EQ(ack->high_water_mark(), 3u);
    EXPECT_TRUE(edge.Close().ok());
  }
  EdgeStream edge(cloud_->Channel(), "gw-a");
  EXPECT_EQ(edge.mark, 3u) << "the welcome carries the mark";
  auto again = edge.Send(MakeBatch(1, 3, "tank-1"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->written(), 0u);
  EXPECT_EQ(again->high_water_mark(), 3u);
  auto straddle = edge.Send(MakeBatch(2, 5, "tank-1"));
  ASSERT_TRUE(straddle);
  EXPECT_EQ(straddle->written(), 2u) << "only seqs 4 and 5 are new";
  EXPECT_TRUE(edge.Close().ok());

  auto readings = AllReadings("tank-1");
  ASSERT_EQ(readings.size(), 5u) << "each reading once";
  for (std::size_t i = 0; i < readings.size(); ++i) EXPECT_EQ(readings[i].value().int_value(), (i + 1) * 10);

  v1::GetDeviceRequest get;
  get.set_device_id("tank-1");
  v1::Device device;
  ASSERT_TRUE(registry_->GetDevice(Ctx().get(), get, &device).ok()) << "unknown devices are registered";
  EXPECT_EQ(device.edge_id(), "gw-a");
  v1::GetEdgeRequest ge;
  ge.set_edge_id("gw-a");
  v1::Edge e;
  ASSERT_TRUE(registry_->GetEdge(Ctx().get(), ge, &e).ok());
  EXPECT_EQ(e.high_water_mark(), 5u);
}

TEST_P(CloudGrpcTest, PoisonReadingsAreRefusedAloneAndTheStreamGoesOn) {
  // Each of these once stalled a gateway: the backend refused the whole batch, the stream
  // ended, the edge resent it forever and every later reading waited behind it.
  EdgeStream edge(cloud_->Channel(), "gw-b");
  auto batch = MakeBatch(1, 7, "tank-2");
  batch.mutable_readings(1)->set_ts(300000000000000);                    // year 11476
  batch.mutable_readings(2)->set_ts(INT64_MAX);
  batch.mutable_readings(3)->mutable_value()->set_string_value(std::string("a\0b", 3));
  batch.mutable_readings(4)->clear_value();
  batch.mutable_readings(5)->set_device_id("a/b");
  auto ack = edge.Send(batch);
  ASSERT_TRUE(ack) << "the batch is acknowledged, not the stream ended";
  EXPECT_EQ(ack->written(), 2u);
  EXPECT_EQ(ack->refused(), 5u);
  EXPECT_EQ(ack->high_water_mark(), 7u) << "the mark moves past the refused readings";
  EXPECT_THAT(ack->refusal(), HasSubstr("seq 2"));
  EXPECT_THAT(ack->refusal(), HasSubstr("outside"));
  auto next = edge.Send(MakeBatch(8, 10, "tank-2"));
  ASSERT_TRUE(next) << "the next batch goes through";
  EXPECT_EQ(next->written(), 3u);
  EXPECT_EQ(next->refused(), 0u);
  EXPECT_TRUE(edge.Close().ok());
  EXPECT_EQ(AllReadings("tank-2").size(), 5u);

  const auto metrics = cloud_->Http("GET", "/metrics").body;
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_readings_refused_total{reason=\"invalid_timestamp\"}"), 2);
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_readings_refused_total{reason=\"invalid_value\"}"), 2);
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_readings_refused_total{reason=\"invalid_key\"}"), 1);
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_batches_rejected_total"), 0);
}

TEST_P(CloudGrpcTest, ANewerSessionOfTheSameEdgeEndsTheOlderOne) {
  // A gateway reconnects (to this replica or another) while its old stream is still open:
  // the old one can neither write nor acknowledge after the new one started.
  EdgeStream older(cloud_->Channel(), "gw-s");
  std::uint64_t acked = 0;
  for (std::uint64_t b = 0; b < 10; ++b) {
    auto ack = older.Send(MakeBatch(b * 100 + 1, (b + 1) * 100, "tank-s"));
    ASSERT_TRUE(ack);
    acked = ack->high_water_mark();
  }
  EdgeStream newer(cloud_->Channel(), "gw-s");
  EXPECT_EQ(newer.mark, acked);
  EXPECT_FALSE(older.Send(MakeBatch(1001, 1100, "tank-s"))) << "the older session is closed";
  for (std::uint64_t b = 10; b < 20; ++b) {
    auto ack = newer.Send(MakeBatch(b * 100 + 1, (b + 1) * 100, "tank-s"));
    ASSERT_TRUE(ack);
    acked = ack->high_water_mark();
  }
  EXPECT_TRUE(newer.Close().ok());
  EXPECT_EQ(acked, 2000u);
  EXPECT_EQ(AllReadings("tank-s").size(), 2000u) << "every acknowledged reading stored, once";
  const auto metrics = cloud_->Http("GET", "/metrics").body;
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_sessions_superseded_total"), 1);
}

TEST_P(CloudGrpcTest, AStreamWithoutHelloIsClosedAtItsDeadline) {
  cloud_->Stop();
  cloud_->Restart({"--hello-timeout-ms", "1000", "--max-edge-streams", "4"});
  auto stub = v1::EdgeSync::NewStub(cloud_->Channel());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::EdgeMessage, v1::CloudMessage>>> idle;
  for (int i = 0; i < 4; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    idle.push_back(stub->Connect(contexts.back().get()));
  }
  // Connect returns before the server has taken the call: wait until all four hold a slot.
  const auto opened = std::chrono::steady_clock::now();
  while (MetricSample(cloud_->Http("GET", "/metrics").body, "strata_cloud_edge_streams_open") < 4 &&
         std::chrono::steady_clock::now() - opened < std::chrono::milliseconds(800)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(MetricSample(cloud_->Http("GET", "/metrics").body, "strata_cloud_edge_streams_open"), 4);
  // A fifth stream is refused while four are open (and waiting for their Hello deadline).
  {
    grpc::ClientContext ctx;
    auto extra = stub->Connect(&ctx);
    v1::CloudMessage m;
    EXPECT_FALSE(extra->Read(&m));
    EXPECT_EQ(extra->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  const auto started = std::chrono::steady_clock::now();
  for (auto& s : idle) {
    // The server cancels the call to wake its reader, so the client sees CANCELLED; the
    // cloud logs "no hello within 1000 ms" and counts it.
    v1::CloudMessage m;
    EXPECT_FALSE(s->Read(&m));
    EXPECT_FALSE(s->Finish().ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // Their slots are free again: a real edge connects.
  EdgeStream edge(cloud_->Channel(), "gw-h");
  auto ack = edge.Send(MakeBatch(1, 2, "tank-h"));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->written(), 2u);
  EXPECT_TRUE(edge.Close().ok());
  const auto metrics = cloud_->Http("GET", "/metrics").body;
  EXPECT_EQ(MetricSample(metrics, "strata_cloud_edge_streams_refused_total"), 5);
}

TEST_P(CloudGrpcTest, PipelinedBatchesAreAckedInOrderThenAMalformedFrameEndsTheStream) {
  EdgeStream edge(cloud_->Channel(), "gw-p");
  constexpr std::uint64_t kBatches = 40, kPer = 5;
  for (std::uint64_t b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(edge.Post(MakeBatch(b * kPer + 1, (b + 1) * kPer, "tank-p")));
  }
  auto bad = MakeBatch(kBatches * kPer + 1, kBatches * kPer + 2, "tank-p");
  bad.mutable_readings(1)->set_seq(kBatches * kPer + 1);  // seqs not increasing: a broken frame
  ASSERT_TRUE(edge.Post(bad));
  for (std::uint64_t b = 0; b < kBatches; ++b) {
    auto ack = edge.NextAck();
    ASSERT_TRUE(ack) << "ack " << b;
    EXPECT_EQ(ack->last_seq(), (b + 1) * kPer);
    EXPECT_EQ(ack->high_water_mark(), (b + 1) * kPer);
    EXPECT_EQ(ack->written(), kPer);
  }
  // No ack for the malformed batch: the cloud says why it ends the stream, in a Goodbye and
  // in the call's status.
  auto last = edge.Next();
  ASSERT_TRUE(last && last->has_goodbye()) << (last ? last->DebugString() : "stream ended");
  EXPECT_EQ(last->goodbye().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(last->goodbye().message(), HasSubstr("not increasing"));
  const auto status = edge.Close();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("not increasing"));
  EXPECT_EQ(AllReadings("tank-p").size(), kBatches * kPer) << "each reading once";

  // Batches waiting together share a transaction; never more transactions than batches.
  const auto metrics = cloud_->Http("GET", "/metrics").body;
  const double transactions = MetricSample(metrics, "strata_cloud_edge_transactions_total");
  EXPECT_GE(transactions, 1);
  EXPECT_LE(transactions, static_cast<double>(kBatches));
}

TEST_P(CloudGrpcTest, CrashBetweenCommitAndAckStoresOnce) {
  cloud_->Restart({"--fault-crash-after-commits", "1"});
  {
    EdgeStream edge(cloud_->Channel(), "gw-c");
    EXPECT_FALSE(edge.Send(MakeBatch(1, 4, "tank-3"))) << "the cloud dies before the ack";
  }
  const int status = cloud_->process().Wait(std::chrono::seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 86) << "exited through the fault injection";

  cloud_->Restart();
  EdgeStream edge(cloud_->Channel(), "gw-c");
  EXPECT_EQ(edge.mark, 4u) << "the batch was committed with its mark";
  // The edge never saw the ack, so it resends: acked without a second write.
  auto ack = edge.Send(MakeBatch(1, 4, "tank-3"));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->written(), 0u);
  EXPECT_TRUE(edge.Close().ok());
  EXPECT_EQ(AllReadings("tank-3").size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Backends, CloudGrpcTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::testing
