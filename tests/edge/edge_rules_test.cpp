// The edge rules on a real buffer file: transitions commit with their readings, are numbered
// for the uplink and forgotten once acked; a replay after a crash makes no transition twice;
// the outbox is bounded.
#include <gtest/gtest.h>

#include "agent/buffer.h"
#include "agent/edge_rules.h"
#include "support/process.h"

namespace strata::edge {
namespace {

constexpr std::int64_t kT0 = 1767225600000;

v1::EdgeConfig Config(std::int64_t evaluated_since = 1) {
  v1::EdgeConfig c;
  c.set_revision(1);
  auto* d = c.add_devices();
  d->set_device_id("m1");
  d->set_type("machine");
  auto* r = c.add_rules();
  r->set_rule_id("hot");
  r->set_location(v1::RULE_LOCATION_EDGE);
  r->set_alarm_type("hot");
  r->set_evaluated_since(evaluated_since);
  auto* level = r->add_raise();
  level->set_severity(v1::ALARM_SEVERITY_MAJOR);
  level->set_condition("t > 80.0");
  r->set_clear("t < 70.0");
  return c;
}

std::vector<EdgeItem> Temps(const std::vector<std::pair<std::int64_t, double>>& at) {
  std::vector<EdgeItem> v;
  for (const auto& [ms, t] : at) {
    EdgeItem it;
    it.device_id = "m1";
    it.key = "t";
    it.ts = kT0 + ms;
    it.value.set_double_value(t);
    v.push_back(it);
  }
  return v;
}

class EdgeRulesTest : public ::testing::Test {
 protected:
  void Open() {
    rules_.reset();
    buffer_.reset();
    auto b = Buffer::Open({.path = dir_.path() + "/buffer.db", .sync_full = false}, metrics_, [] { return kT0; });
    ASSERT_TRUE(b.ok()) << b.status();
    buffer_ = *std::move(b);
    auto r = EdgeRules::Open(*buffer_, metrics_, [this] { return now_; });
    ASSERT_TRUE(r.ok()) << r.status();
    rules_ = *std::move(r);
    rules_->SetConfig(Config());
    ASSERT_TRUE(rules_->Replay().ok());
  }
  // Evaluates and commits, as the pipeline does.
  void Ingest(const std::vector<EdgeItem>& items) {
    auto side = rules_->Evaluate(items);
    ASSERT_TRUE(buffer_->Append(items, side.get()).ok());
    if (side) rules_->Committed();
  }
  std::vector<std::string> Outbox() {
    std::vector<std::string> out;
    auto reports = rules_->ReportsAfter(0, 1000000);
    EXPECT_TRUE(reports.ok());
    if (!reports.ok()) return out;
    for (const auto& [seq, a] : *reports) out.push_back(std::to_string(seq) + " " + a.kind() + " " + std::to_string(a.ts() - kT0));
    return out;
  }

  testing::TempDir dir_;
  MetricsRegistry metrics_;
  std::int64_t now_ = kT0;
  std::unique_ptr<Buffer> buffer_;
  std::unique_ptr<EdgeRules> rules_;
};

TEST_F(EdgeRulesTest, TransitionsAreNumberedSentUntilAckedAndMadeOnce) {
  Open();
  Ingest(Temps({{0, 75}, {1000, 85}, {2000, 90}, {3000, 65}}));
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"1 RAISED 1000", "2 CLEARED 3000"}));
  EXPECT_EQ(rules_->LastReportSeq(), 2);
  EXPECT_EQ(rules_->Pending(), 2u);
  v1::EdgeAlarmAck ack;
  ack.set_seq(1);
  rules_->Acked(ack);
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"2 CLEARED 3000"}));
  EXPECT_EQ(rules_->Pending(), 1u);
  // A crash before the states were saved: the readings are evaluated again at start, and
  // what they make is the rows it was (the acked one too), not new alarms.
  Open();
  EXPECT_EQ(metrics_.GetCounter("strata_edge_rule_replayed_readings_total", "").Value(), 4u);
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"2 CLEARED 3000"}));
  EXPECT_EQ(rules_->LastReportSeq(), 2);
  // Saved now: a restart replays nothing, and the state goes on where it was.
  ASSERT_TRUE(rules_->Save().ok());
  Open();
  Ingest(Temps({{4000, 95}}));
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"2 CLEARED 3000", "3 RAISED 4000"}));
}

TEST_F(EdgeRulesTest, AnOutboxBelowTheCloudsMarkIsRenumberedAboveIt) {
  Open();
  Ingest(Temps({{0, 85}}));
  ASSERT_TRUE(rules_->RebaseAbove(500).ok());
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"501 RAISED 0"}));
  Ingest(Temps({{1000, 60}}));
  EXPECT_EQ(Outbox(), (std::vector<std::string>{"501 RAISED 0", "502 CLEARED 1000"}));
  ASSERT_TRUE(rules_->RebaseAbove(100).ok()) << "a lower mark changes nothing";
  EXPECT_EQ(rules_->LastReportSeq(), 502);
}

TEST_F(EdgeRulesTest, TheOutboxIsBoundedAndWhatItDropsIsCounted) {
  Open();
  // 60,001 raise/clear pairs with nothing acknowledged: 120,002 transitions, 100,000 kept.
  std::vector<std::pair<std::int64_t, double>> at;
  for (int i = 0; i <= 60000; ++i) {
    at.emplace_back(2000LL * i, 85.0);
    at.emplace_back(2000LL * i + 1000, 60.0);
  }
  Ingest(Temps(at));
  EXPECT_EQ(rules_->LastReportSeq(), 120002);
  EXPECT_EQ(rules_->Pending(), 100000u);
  EXPECT_EQ(metrics_.GetCounter("strata_edge_rule_alarms_dropped_total", "").Value(), 20002u);
  auto first = rules_->ReportsAfter(0, 1);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ(first->front().first, 20003) << "the oldest went";
}

}  // namespace
}  // namespace strata::edge
