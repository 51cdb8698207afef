// The durable buffer on a real SQLite file: sequence numbers, acks, bounds and policies,
// persistence across reopen, rebasing, schema versions.
#include <gtest/gtest.h>
#include <strata/sqlite/sqlite.h>

#include "agent/buffer.h"
#include "support/process.h"

namespace strata::edge {
namespace {

std::vector<EdgeItem> Items(int n, int start = 0) {
  std::vector<EdgeItem> v;
  for (int i = start; i < start + n; ++i) {
    EdgeItem it;
    it.device_id = "d" + std::to_string(i % 3);
    it.key = "k";
    it.ts = 1000 + i;
    it.value.set_int_value(i);
    v.push_back(it);
  }
  return v;
}

class BufferTest : public ::testing::Test {
 protected:
  std::unique_ptr<Buffer> Open(BufferOptions o = {}) {
    o.path = dir_.path() + "/buffer.db";
    auto b = Buffer::Open(o, metrics_, [this] { return now_; });
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  }
  std::uint64_t Dropped(const std::string& reason) {
    return metrics_.GetCounter("strata_edge_readings_dropped_total", "Readings dropped by the buffer", {{"reason", reason}})
        .Value();
  }

  testing::TempDir dir_;
  MetricsRegistry metrics_;
  std::int64_t now_ = 1'000'000;
};

TEST_F(BufferTest, AppendsReadsAndAcks) {
  auto b = Open();
  ASSERT_TRUE(b->Append(Items(10)).ok());
  EXPECT_EQ(b->Count(), 10u);
  EXPECT_EQ(b->LastSeq(), 10u);
  auto r = b->ReadAfter(3, 4);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].seq(), 4u);
  EXPECT_EQ((*r)[0].value().int_value(), 3);
  EXPECT_EQ((*r)[0].device_id(), "d0");
  EXPECT_EQ(*b->AckUpTo(5), 5u);
  EXPECT_EQ(b->Count(), 5u);
  EXPECT_EQ(b->ReadAfter(0, 100)->front().seq(), 6u);
}

TEST_F(BufferTest, AHoldKeepsAcknowledgedReadingsUntilItMoves) {
  auto b = Open();
  ASSERT_TRUE(b->Append(Items(10)).ok());
  ASSERT_TRUE(b->SetHold(4).ok());
  EXPECT_EQ(*b->AckUpTo(10), 4u) << "only up to the hold";
  EXPECT_EQ(b->ReadAfter(0, 100)->front().seq(), 5u);
  ASSERT_TRUE(b->SetHold(8).ok());
  EXPECT_EQ(b->Count(), 2u) << "the acknowledgement takes effect as the hold moves";
  ASSERT_TRUE(b->SetHold(UINT64_MAX).ok());
  EXPECT_EQ(b->Count(), 0u);
}

TEST_F(BufferTest, ASideWriteCommitsWithTheReadingsOrNotAtAll) {
  auto b = Open();
  ASSERT_TRUE(b->Transact([](sqlite::Connection& db, std::uint64_t) {
                 return db.Exec("CREATE TABLE side (last_seq INTEGER)");
               }).ok());
  Buffer::SideWrite ok = [](sqlite::Connection& db, std::uint64_t last) {
    return sqlite::Exec(db, "INSERT INTO side VALUES (?1)", static_cast<std::int64_t>(last));
  };
  ASSERT_TRUE(b->Append(Items(3), &ok).ok());
  Buffer::SideWrite fail = [](sqlite::Connection&, std::uint64_t) { return absl::InternalError("no"); };
  EXPECT_FALSE(b->Append(Items(2), &fail).ok());
  EXPECT_EQ(b->Count(), 3u) << "the readings rolled back with the side write";
  EXPECT_EQ(b->LastSeq(), 3u);
  std::int64_t side = 0;
  ASSERT_TRUE(b->Transact([&](sqlite::Connection& db, std::uint64_t) -> absl::Status {
                 auto n = sqlite::QueryInt(db, "SELECT MAX(last_seq) FROM side");
                 if (n.ok()) side = *n;
                 return n.status();
               }).ok());
  EXPECT_EQ(side, 3);
}

TEST_F(BufferTest, SurvivesReopenAndNeverReusesSeqs) {
  {
    auto b = Open();
    ASSERT_TRUE(b->Append(Items(5)).ok());
    ASSERT_TRUE(b->AckUpTo(5).ok());
    EXPECT_EQ(b->Count(), 0u);
  }
  auto b = Open();
  EXPECT_EQ(b->LastSeq(), 5u) << "the sequence survives even when the buffer is empty";
  ASSERT_TRUE(b->Append(Items(2)).ok());
  EXPECT_EQ(b->ReadAfter(0, 10)->front().seq(), 6u);
}

TEST_F(BufferTest, DropOldestKeepsNewestAndCounts) {
  BufferOptions o;
  o.max_bytes = 200;
  auto b = Open(o);
  ASSERT_TRUE(b->Append(Items(10)).ok());
  const auto before = b->Count();
  ASSERT_GT(before, 0u);
  auto r = b->Append(Items(10, 10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->appended, 10u);
  EXPECT_GT(r->dropped_oldest, 0u);
  EXPECT_LE(b->Bytes(), 200u);
  EXPECT_EQ(Dropped("buffer_full_oldest"), r->dropped_oldest);
  EXPECT_EQ(b->Count() + Dropped("buffer_full_oldest"), 20u) << "every reading is either kept or counted";
  EXPECT_EQ(b->ReadAfter(0, 100)->back().value().int_value(), 19);
}

TEST_F(BufferTest, RefuseNewKeepsOldestAndCounts) {
  BufferOptions o;
  o.max_bytes = 400;
  o.policy = FullPolicy::kRefuseNew;
  auto b = Open(o);
  auto r1 = b->Append(Items(30));
  ASSERT_TRUE(r1.ok());
  EXPECT_GT(r1->refused, 0u);
  EXPECT_EQ(r1->appended + r1->refused, 30u);
  EXPECT_EQ(b->ReadAfter(0, 100)->front().value().int_value(), 0);
  EXPECT_EQ(Dropped("buffer_full_refused"), r1->refused);
}

TEST_F(BufferTest, AgeLimitDropsOldReadings) {
  BufferOptions o;
  o.max_age_ms = 1000;
  auto b = Open(o);
  ASSERT_TRUE(b->Append(Items(3)).ok());
  now_ += 500;
  ASSERT_TRUE(b->Append(Items(2, 3)).ok());
  EXPECT_EQ(*b->EnforceAge(), 0u);
  EXPECT_NEAR(b->OldestAgeSeconds(), 0.5, 1e-9);
  now_ += 600;
  EXPECT_EQ(*b->EnforceAge(), 3u);
  EXPECT_EQ(b->Count(), 2u);
  EXPECT_EQ(Dropped("max_age"), 3u);
}

TEST_F(BufferTest, RebaseAboveACloudMarkRenumbersPending) {
  auto b = Open();
  ASSERT_TRUE(b->Append(Items(3)).ok());
  ASSERT_TRUE(b->RebaseAbove(100).ok());
  auto r = b->ReadAfter(100, 10);
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].seq(), 101u);
  EXPECT_EQ(b->LastSeq(), 103u);
  ASSERT_TRUE(b->Append(Items(1)).ok());
  EXPECT_EQ(b->LastSeq(), 104u);
  ASSERT_TRUE(b->RebaseAbove(50).ok());
  EXPECT_EQ(b->LastSeq(), 104u) << "a lower mark changes nothing";
}

TEST_F(BufferTest, ABufferFromBeforeSchemaVersionsOpensWithItsReadings) {
  // The layout buffers had before migrations were recorded (schema_version in buffer_meta).
  {
    auto raw = sqlite::Connection::Open({.path = dir_.path() + "/buffer.db"});
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE((*raw)->Exec(R"sql(
      CREATE TABLE buffer_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO buffer_meta (key, value) VALUES ('schema_version', 1), ('last_seq', 7);
      CREATE TABLE readings (seq INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, data BLOB NOT NULL);
    )sql").ok());
    v1::EdgeReading r;
    r.set_device_id("old");
    r.set_key("k");
    r.set_ts(5);
    r.mutable_value()->set_int_value(42);
    auto insert = (*raw)->Prepare("INSERT INTO readings VALUES (7, 1, ?1)");
    ASSERT_TRUE(insert->BindBlob(1, r.SerializeAsString()).Run().ok());
  }
  auto b = Open();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->LastSeq(), 7u);
  auto pending = b->ReadAfter(0, 10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].device_id(), "old");
  EXPECT_EQ((*pending)[0].value().int_value(), 42);
  ASSERT_TRUE(b->Append(Items(1)).ok());
  EXPECT_EQ(b->LastSeq(), 8u);
}

TEST_F(BufferTest, ABufferFromANewerReleaseIsRefusedUntouched) {
  { ASSERT_NE(Open(), nullptr); }
  {
    auto raw = sqlite::Connection::Open({.path = dir_.path() + "/buffer.db"});
    ASSERT_TRUE((*raw)->Exec("INSERT INTO schema_migrations VALUES (99, 'future', 0)").ok());
  }
  BufferOptions o;
  o.path = dir_.path() + "/buffer.db";
  auto b = Buffer::Open(o, metrics_, [this] { return now_; });
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(b.status().message().find("schema version 99"), std::string::npos) << b.status();
}

}  // namespace
}  // namespace strata::edge
