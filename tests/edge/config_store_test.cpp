// The edge's config snapshot on a real SQLite file: apply, refuse, replays, reopen, and a
// stage left behind by a crash.
#include <gtest/gtest.h>
#include <strata/sqlite/sqlite.h>

#include "agent/config_store.h"
#include "support/process.h"

namespace strata::edge {
namespace {

v1::EdgeConfig Config(std::uint64_t revision, std::vector<std::string> devices) {
  v1::EdgeConfig c;
  c.set_revision(revision);
  for (auto& d : devices) c.add_devices()->set_device_id(std::move(d));
  return c;
}

// The answer Apply() gives (it fails only when the store cannot write).
v1::ConfigAck Apply(ConfigStore& store, const v1::EdgeConfig& config) {
  auto ack = store.Apply(config);
  EXPECT_TRUE(ack.ok()) << ack.status();
  return ack.ok() ? *ack : v1::ConfigAck();
}

class ConfigStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<ConfigStore> Open() {
    auto s = ConfigStore::Open({.path = path()}, directory_, metrics_, [this] { return now_; });
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::string path() const { return dir_.path() + "/config.db"; }

  testing::TempDir dir_;
  MetricsRegistry metrics_;
  DeviceDirectory directory_;
  std::int64_t now_ = 1'700'000'000'000;
};

TEST_F(ConfigStoreTest, AppliesARevisionAndBootsFromIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Applied().revision, 0u);
  auto ack = Apply(*store, Config(3, {"a", "b"}));
  EXPECT_EQ(ack.revision(), 3u);
  EXPECT_TRUE(ack.applied()) << ack.error();
  EXPECT_TRUE(directory_.Contains("a"));
  EXPECT_TRUE(directory_.Contains("b"));
  EXPECT_EQ(store->Applied().applied_at, now_);
  store.reset();

  DeviceDirectory fresh;
  auto reopened = ConfigStore::Open({.path = path()}, fresh, metrics_, [this] { return now_; });
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Applied().revision, 3u);
  EXPECT_EQ((*reopened)->Applied().devices, 2u);
  EXPECT_TRUE(fresh.Contains("a")) << "the snapshot is what a boot without the cloud runs on";
  EXPECT_FALSE(fresh.Contains("c"));
}

TEST_F(ConfigStoreTest, ARefusedRevisionLeavesTheRunningOneWhole) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Apply(*store, Config(1, {"a"})).applied());
  for (const auto& bad : {Config(2, {"b", "b"}), Config(2, {"x/y"}), Config(2, {""}), Config(0, {"b"})}) {
    auto ack = Apply(*store, bad);
    EXPECT_FALSE(ack.applied()) << bad.DebugString();
    EXPECT_FALSE(ack.error().empty());
    EXPECT_EQ(store->Applied().revision, 1u);
    EXPECT_TRUE(directory_.Contains("a"));
    EXPECT_FALSE(directory_.Contains("b")) << "never a mix of two revisions";
  }
  EXPECT_EQ(metrics_.GetCounter("strata_edge_config_revisions_total", "", {{"result", "rejected"}}).Value(), 4u);
  // The next good revision goes through.
  EXPECT_TRUE(Apply(*store, Config(2, {"b"})).applied());
  EXPECT_FALSE(directory_.Contains("a"));
  EXPECT_TRUE(directory_.Contains("b"));
}

TEST_F(ConfigStoreTest, ARevisionAppliedBeforeIsAckedAgainWithoutApplying) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Apply(*store, Config(5, {"a"})).applied());
  now_ += 1000;
  auto again = Apply(*store, Config(5, {"zzz"}));
  EXPECT_TRUE(again.applied()) << "the cloud lost our ack: it gets another";
  EXPECT_FALSE(directory_.Contains("zzz")) << "applied at most once";
  EXPECT_EQ(store->Applied().applied_at, now_ - 1000);
  EXPECT_EQ(metrics_.GetCounter("strata_edge_config_revisions_total", "", {{"result", "applied"}}).Value(), 1u);
  // A lower revision means the cloud went back (a restored database): it is the source of
  // truth, so its revision is applied.
  EXPECT_TRUE(Apply(*store, Config(3, {"b"})).applied());
  EXPECT_EQ(store->Applied().revision, 3u);
  EXPECT_TRUE(directory_.Contains("b"));
  EXPECT_FALSE(directory_.Contains("a"));
}

TEST_F(ConfigStoreTest, AStoreThatCannotWriteGivesNoAnswer) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Apply(*store, Config(1, {"a"})).applied());
  {
    // Another writer holds the database: this store's write fails (busy), which is not a
    // refusal of the revision.
    auto other = sqlite::Connection::Open({.path = path(), .busy_timeout_ms = 0});
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE((*other)->Exec("BEGIN IMMEDIATE").ok());
    auto ack = store->Apply(Config(2, {"b"}));
    EXPECT_FALSE(ack.ok()) << "no answer: the cloud sends the revision again";
    ASSERT_TRUE((*other)->Exec("ROLLBACK").ok());
  }
  EXPECT_EQ(store->Applied().revision, 1u);
  EXPECT_TRUE(directory_.Contains("a"));
  EXPECT_TRUE(Apply(*store, Config(2, {"b"})).applied());
}

TEST_F(ConfigStoreTest, ARevisionFromACloudWithoutTwinsKeepsEachDevicesDesiredDocument) {
  std::vector<v1::EdgeConfig> seen;
  auto s = ConfigStore::Open({.path = path(), .on_applied = [&](const v1::EdgeConfig& c) { seen.push_back(c); }},
                             directory_, metrics_, [this] { return now_; });
  ASSERT_TRUE(s.ok()) << s.status();
  auto& store = **s;
  v1::EdgeConfig with = Config(1, {"a", "b"});
  with.mutable_devices(0)->set_desired_json(R"({"rpm":1200})");
  with.mutable_devices(0)->set_desired_version(3);
  ASSERT_TRUE(store.Apply(with)->applied());
  // Revision 2 from a cloud of version 3: no desired fields; "a" keeps its document.
  ASSERT_TRUE(store.Apply(Config(2, {"a", "c"}), /*carries_desired=*/false)->applied());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen.back().devices(0).desired_version(), 3);
  EXPECT_EQ(seen.back().devices(0).desired_json(), R"({"rpm":1200})");
  EXPECT_EQ(seen.back().devices(1).desired_version(), 0);
  // A desired document that is not a JSON object refuses the whole revision.
  v1::EdgeConfig bad = Config(3, {"a"});
  bad.mutable_devices(0)->set_desired_json("[1]");
  bad.mutable_devices(0)->set_desired_version(4);
  auto ack = store.Apply(bad);
  ASSERT_TRUE(ack.ok());
  EXPECT_FALSE(ack->applied());
  EXPECT_NE(ack->error().find("desired_json is not a JSON object"), std::string::npos) << ack->error();
  EXPECT_EQ(store.Applied().revision, 2u);
}

TEST_F(ConfigStoreTest, ARevisionFromACloudWithoutSettingsKeepsTheOnesTheEdgeRuns) {
  std::vector<v1::EdgeConfig> seen;
  auto s = ConfigStore::Open({.path = path(), .on_applied = [&](const v1::EdgeConfig& c) { seen.push_back(c); }},
                             directory_, metrics_, [this] { return now_; });
  ASSERT_TRUE(s.ok()) << s.status();
  v1::EdgeConfig with = Config(1, {"a"});
  with.mutable_settings()->set_unknown_devices("reject");
  ASSERT_TRUE((*s)->Apply(with)->applied());
  ASSERT_TRUE((*s)->Apply(Config(2, {"a", "b"}), true, /*carries_settings=*/false)->applied());
  EXPECT_EQ(seen.back().settings().unknown_devices(), "reject");
  ASSERT_TRUE((*s)->Apply(Config(3, {"a"}))->applied());  // from a cloud of version 5: cleared
  EXPECT_FALSE(seen.back().settings().has_unknown_devices());
  // Out of range: the revision is refused.
  v1::EdgeConfig bad = Config(4, {"a"});
  bad.mutable_settings()->set_batch_max(0);
  EXPECT_FALSE((*s)->Apply(bad)->applied());
}

TEST_F(ConfigStoreTest, AStageLeftByACrashIsDiscardedAtOpen) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(Apply(*store, Config(1, {"a"})).applied());
  }
  {
    // What a process killed between staging and switching leaves behind.
    auto db = sqlite::Connection::Open({.path = path()});
    ASSERT_TRUE(db.ok());
    auto s = (*db)->Prepare("INSERT INTO config_staged (revision, document, staged_at) VALUES (2, ?1, 0)");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->BindBlob(1, Config(2, {"b"}).SerializeAsString()).Run().ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Applied().revision, 1u) << "exactly the old revision";
  EXPECT_TRUE(directory_.Contains("a"));
  EXPECT_FALSE(directory_.Contains("b"));
  // The cloud sends revision 2 again (it was never acked), and it applies.
  EXPECT_TRUE(Apply(*store, Config(2, {"b"})).applied());
  EXPECT_TRUE(directory_.Contains("b"));
}

}  // namespace
}  // namespace strata::edge
