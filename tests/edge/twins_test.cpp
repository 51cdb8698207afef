// The edge's twins on a real SQLite file: reports merged, refused by reason, sent until acked;
// desired documents published when they change, cleared when a device leaves (also after a
// restart), republished on a new broker connection; and the three threads that use it at once.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/config_store.h"
#include "agent/twins.h"
#include "support/metrics_text.h"
#include "support/process.h"

namespace strata::edge {
namespace {

using Json = nlohmann::json;

// Stands in for the broker connection: records what was published, answers OK (or not).
struct Published {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> messages;
  std::atomic<bool> up{true};

  RetainedPublisher Publisher() {
    return [this](const std::vector<std::pair<std::string, std::string>>& batch) {
      std::lock_guard lock(mu);
      if (!up) return std::vector<absl::Status>(batch.size(), absl::UnavailableError("down"));
      for (const auto& m : batch) messages.push_back(m);
      return std::vector<absl::Status>(batch.size(), absl::OkStatus());
    };
  }
  std::map<std::string, std::string> Last() {
    std::lock_guard lock(mu);
    std::map<std::string, std::string> out;
    for (const auto& [topic, payload] : messages) out[topic] = payload;
    return out;
  }
  std::size_t Count() {
    std::lock_guard lock(mu);
    return messages.size();
  }
};

v1::EdgeConfig Revision(std::uint64_t revision, std::map<std::string, std::pair<std::int64_t, Json>> devices) {
  v1::EdgeConfig c;
  c.set_revision(revision);
  for (auto& [id, desired] : devices) {
    auto* d = c.add_devices();
    d->set_device_id(id);
    d->set_desired_version(desired.first);
    d->set_desired_json(desired.second.dump());
  }
  return c;
}

class TwinsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Twins> Open(TwinsOptions options = {}) {
    options.path = dir_.path() + "/twins.db";
    auto t = Twins::Open(std::move(options), metrics_, [this] { return now_.load(); });
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
  double Metric(const std::string& sample) { return testing::MetricSample(metrics_.Render(), sample); }
  static std::vector<std::pair<std::int64_t, v1::TwinReported>> Reports(Twins& t, std::int64_t after,
                                                                         std::size_t max) {
    auto r = t.ReportsAfter(after, max);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    return *std::move(r);
  }
  std::map<std::string, Json> Pending(Twins& t) {
    std::map<std::string, Json> out;
    for (auto& [seq, r] : Reports(t, 0, 1000)) out[r.device_id()] = Json::parse(r.reported_json());
    return out;
  }

  testing::TempDir dir_;
  MetricsRegistry metrics_;
  std::atomic<std::int64_t> now_{1'700'000'000'000};
};

TEST_F(TwinsTest, ReportsMergeIntoOneDocumentPerDeviceAndWaitUntilAcked) {
  auto twins = Open();
  twins->OnReported("fan-1", R"({"rpm":1000,"mode":{"eco":true,"level":1},"temp":40})");
  twins->OnReported("fan-1", R"({"temp":null,"mode":{"level":2}})");
  twins->OnReported("fan-2", R"({"on":true})");
  EXPECT_EQ(Pending(*twins), (std::map<std::string, Json>{
                                 {"fan-1", Json::parse(R"({"rpm":1000,"mode":{"eco":true,"level":2}})")},
                                 {"fan-2", Json::parse(R"({"on":true})")}}));
  EXPECT_EQ(Metric("strata_edge_twin_reported_pending"), 2);
  auto reports = Reports(*twins, 0, 10);
  ASSERT_EQ(reports.size(), 2u);
  // Seqs rise, and start at the clock in microseconds (so a lost twins.db still sends seqs
  // above the ones the cloud kept).
  EXPECT_GE(reports[0].first, now_ * 1000);
  EXPECT_LT(reports[0].first, reports[1].first);
  EXPECT_EQ(twins->LastReportSeq(), reports[1].first);
  // Only what is above the cursor, and only until acked.
  EXPECT_EQ(Reports(*twins, reports[0].first, 10).size(), 1u);
  v1::TwinReportedAck ack;
  ack.set_device_id(reports[0].second.device_id());
  ack.set_seq(static_cast<std::uint64_t>(reports[0].first));
  twins->Acked(ack);
  twins->Acked(ack);  // again: nothing more
  EXPECT_EQ(Reports(*twins, 0, 10).size(), 1u);
  EXPECT_EQ(Metric("strata_edge_twin_reported_pending"), 1);
  // A report of the same document again changes nothing and sends nothing.
  const std::int64_t last = twins->LastReportSeq();
  twins->OnReported("fan-2", R"({"on":true})");
  EXPECT_EQ(twins->LastReportSeq(), last);
  // An ack for an older seq than the document has now leaves it pending.
  twins->OnReported("fan-2", R"({"on":false})");
  ack.set_device_id("fan-2");
  ack.set_seq(static_cast<std::uint64_t>(last));
  twins->Acked(ack);
  EXPECT_EQ(Pending(*twins).at("fan-2"), Json::parse(R"({"on":false})"));
  // Kept through a restart.
  twins.reset();
  twins = Open();
  EXPECT_EQ(Pending(*twins).size(), 1u);
  EXPECT_EQ(Metric("strata_edge_twin_reported_pending"), 1);
}

TEST_F(TwinsTest, BadReportsAreRefusedByReasonAndChangeNothing) {
  auto twins = Open({.max_devices = 2, .accept_device = [&](const std::string& id) { return id != "stranger"; }});
  twins->OnReported("fan-1", R"({"ok":1})");
  twins->OnReported("fan-1", "not json");
  twins->OnReported("fan-1", "[1]");
  twins->OnReported("fan-1", std::string(100, '[') + std::string(100, ']'));
  twins->OnReported("fan-1", Json{{"blob", std::string(40000, 'x')}}.dump());
  twins->OnReported("fan-1", Json{{"a", std::string(30000, 'x')}}.dump());
  twins->OnReported("fan-1", Json{{"b", std::string(30000, 'x')}}.dump());
  twins->OnReported("fan-1", Json{{"c", std::string(30000, 'x')}}.dump());  // the document would pass 64 KiB
  twins->OnReported("bad/id", R"({"ok":1})");
  twins->OnReported("stranger", R"({"ok":1})");
  twins->OnReported("fan-1", R"({"ok":2})", /*retained=*/true);
  twins->OnReported("fan-2", R"({"ok":1})");
  twins->OnReported("fan-3", R"({"ok":1})");  // a third device: above max_devices
  auto outcome = [&](const std::string& o) { return Metric("strata_edge_twin_reported_total{outcome=\"" + o + "\"}"); };
  EXPECT_EQ(outcome("malformed"), 3);
  EXPECT_EQ(outcome("too_large"), 2);
  EXPECT_EQ(outcome("invalid_device"), 1);
  EXPECT_EQ(outcome("unknown_device"), 1);
  EXPECT_EQ(outcome("retained"), 1);
  EXPECT_EQ(outcome("too_many_devices"), 1);
  EXPECT_EQ(outcome("accepted"), 4);
  auto pending = Pending(*twins);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending.at("fan-1")["ok"], 1);
  EXPECT_TRUE(pending.at("fan-1").contains("b"));
  EXPECT_FALSE(pending.at("fan-1").contains("c"));
}

TEST_F(TwinsTest, DesiredIsPublishedWhenItChangesClearedWhenADeviceLeavesAndAgainOnANewConnection) {
  Published broker;
  auto twins = Open();
  twins->Start(broker.Publisher());
  twins->SetDesired(Revision(1, {{"fan-1", {1, {{"rpm", 1200}}}}, {"fan-2", {0, Json::object()}}}));
  ASSERT_TRUE(testing::WaitFor([&] { return broker.Count() == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(Json::parse(broker.Last().at("v1/devices/fan-1/desired")),
            (Json{{"version", 1}, {"desired", {{"rpm", 1200}}}}));
  // A revision that changes another device only publishes nothing for fan-1.
  twins->SetDesired(Revision(2, {{"fan-1", {1, {{"rpm", 1200}}}}, {"fan-2", {1, {{"on", true}}}}}));
  ASSERT_TRUE(testing::WaitFor([&] { return broker.Count() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(broker.Last().count("v1/devices/fan-2/desired"), 1u);
  // A new broker connection: every document again.
  twins->BrokerConnected();
  ASSERT_TRUE(testing::WaitFor([&] { return broker.Count() == 4; }, std::chrono::seconds(5)));
  // While the broker is down, fan-2 leaves; after a restart the clear still goes out.
  broker.up = false;
  twins->SetDesired(Revision(3, {{"fan-1", {1, {{"rpm", 1200}}}}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  twins.reset();
  broker.up = true;
  twins = Open();
  twins->Start(broker.Publisher());
  twins->SetDesired(Revision(3, {{"fan-1", {1, {{"rpm", 1200}}}}}));
  ASSERT_TRUE(testing::WaitFor([&] { return broker.Last().at("v1/devices/fan-2/desired").empty(); },
                               std::chrono::seconds(5)));
  EXPECT_GT(Metric("strata_edge_twin_desired_publish_failures_total"), 0);
  twins->Stop();
}

TEST_F(TwinsTest, DevicesThatLeaveTheRevisionAreForgottenOnceTheCloudHasThem) {
  auto twins = Open();
  twins->OnReported("fan-1", R"({"a":1})");
  twins->OnReported("fan-2", R"({"b":1})");
  for (auto& [seq, r] : Reports(*twins, 0, 10)) {
    if (r.device_id() != "fan-1") continue;
    v1::TwinReportedAck ack;
    ack.set_device_id("fan-1");
    ack.set_seq(static_cast<std::uint64_t>(seq));
    twins->Acked(ack);
  }
  twins->SetDesired(Revision(5, {}));
  // fan-1 (acked) is forgotten; fan-2 waits for the cloud. A report of fan-1 starts afresh.
  twins->OnReported("fan-1", R"({"c":1})");
  auto pending = Pending(*twins);
  EXPECT_EQ(pending.at("fan-1"), Json::parse(R"({"c":1})"));
  EXPECT_EQ(pending.at("fan-2"), Json::parse(R"({"b":1})"));
}

TEST_F(TwinsTest, IngestUplinkAndPublisherThreadsTogether) {
  Published broker;
  auto twins = Open();
  twins->Start(broker.Publisher());
  std::atomic<bool> done{false};
  std::thread ingest([&] {
    for (int i = 0; i < 2000; ++i) twins->OnReported("d-" + std::to_string(i % 50), Json{{"n", i}}.dump());
    done = true;
  });
  std::thread uplink([&] {
    std::int64_t cursor = 0;
    while (!done || twins->LastReportSeq() > cursor) {
      for (auto& [seq, r] : Reports(*twins, cursor, 64)) {
        v1::TwinReportedAck ack;
        ack.set_device_id(r.device_id());
        ack.set_seq(static_cast<std::uint64_t>(seq));
        twins->Acked(ack);
        cursor = seq;
      }
    }
  });
  std::thread config([&] {
    for (std::uint64_t r = 1; r <= 50; ++r) {
      twins->SetDesired(Revision(r, {{"d-" + std::to_string(r % 50), {static_cast<std::int64_t>(r), {{"r", r}}}}}));
    }
  });
  ingest.join();
  uplink.join();
  config.join();
  EXPECT_TRUE(Reports(*twins, 0, 1000).empty());
  EXPECT_EQ(Metric("strata_edge_twin_reported_pending"), 0);
  EXPECT_EQ(Metric("strata_edge_twin_reported_total{outcome=\"accepted\"}"), 2000);
  twins->Stop();
}

}  // namespace
}  // namespace strata::edge
