// The core SQLite layer on real database files: errors come back as statuses with the right
// code, transactions roll back unless committed, a second writer waits for the busy timeout
// and then fails UNAVAILABLE, and migrations apply once, in order, and refuse a newer schema.
#include <strata/sqlite/migrations.h>
#include <strata/sqlite/sqlite.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/process.h"

namespace strata::sqlite {
namespace {

using ::testing::HasSubstr;

class SqliteTest : public ::testing::Test {
 protected:
  std::unique_ptr<Connection> Open(int busy_timeout_ms = 5000) {
    auto db = Connection::Open({.path = dir_.path() + "/test.db", .busy_timeout_ms = busy_timeout_ms});
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? *std::move(db) : nullptr;
  }
  std::int64_t Count(Connection& db, std::string_view table) {
    auto s = db.Prepare("SELECT COUNT(*) FROM " + std::string(table));
    EXPECT_TRUE(s.ok()) << s.status();
    auto row = s->Step();
    EXPECT_TRUE(row.ok() && *row);
    return s->Int(0);
  }

  testing::TempDir dir_;
};

TEST_F(SqliteTest, StatementsBindStepAndReadEveryType) {
  auto db = Open();
  ASSERT_TRUE(db->Exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n TEXT)").ok());
  auto insert = db->Prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)");
  ASSERT_TRUE(insert.ok()) << insert.status();
  const std::string blob("a\0b", 3);
  ASSERT_TRUE(insert->Bind(1, std::int64_t{-9007199254740993}).Bind(2, 2.5).Bind(3, std::string_view("x"))
                  .BindBlob(4, blob).Bind(5, std::optional<std::string>()).Run().ok());
  EXPECT_EQ(db->Changes(), 1);
  auto select = db->Prepare("SELECT i, d, s, b, n FROM t");
  ASSERT_TRUE(select.ok());
  auto row = select->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(select->Int(0), -9007199254740993);
  EXPECT_EQ(select->Double(1), 2.5);
  EXPECT_EQ(select->Text(2), "x");
  EXPECT_EQ(select->Blob(3), blob);
  EXPECT_TRUE(select->IsNull(4));
  row = select->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST_F(SqliteTest, ErrorsAreStatusesWithTheirCode) {
  auto db = Open();
  auto bad = db->Prepare("SELEKT 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("syntax error"));
  EXPECT_EQ(SqliteCode(bad.status()), SQLITE_ERROR);

  ASSERT_TRUE(db->Exec("CREATE TABLE u (k TEXT PRIMARY KEY)").ok());
  auto insert = db->Prepare("INSERT INTO u VALUES (?1)");
  ASSERT_TRUE(insert->Bind(1, std::string_view("a")).Run().ok());
  insert->Reset();
  absl::Status dup = insert->Bind(1, std::string_view("a")).Run();
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  EXPECT_EQ(SqliteCode(dup), SQLITE_CONSTRAINT_PRIMARYKEY);
  EXPECT_FALSE(SqliteCode(absl::NotFoundError("ours")).has_value()) << "a caller's own errors carry no code";

  // A bind to a parameter that does not exist is kept and reported by the step.
  insert->Reset();
  absl::Status bind = insert->Bind(1, std::string_view("b")).Bind(7, 1).Run();
  EXPECT_EQ(bind.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(bind.message()), HasSubstr("bind ?7"));
  EXPECT_EQ(Count(*db, "u"), 1) << "nothing ran";
}

TEST_F(SqliteTest, TransactionsRollBackUnlessCommitted) {
  auto db = Open();
  ASSERT_TRUE(db->Exec("CREATE TABLE t (v INTEGER)").ok());
  {
    auto tx = Transaction::Begin(*db);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  }  // not committed
  EXPECT_EQ(Count(*db, "t"), 0);
  {
    auto tx = Transaction::Begin(*db);
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(tx->Commit().ok());
    EXPECT_EQ(tx->Commit().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(Count(*db, "t"), 1);
}

TEST_F(SqliteTest, ASecondWriterWaitsForTheBusyTimeoutThenIsUnavailable) {
  auto first = Open();
  ASSERT_TRUE(first->Exec("CREATE TABLE t (v INTEGER)").ok());
  auto second = Open(/*busy_timeout_ms=*/200);
  auto held = Transaction::Begin(*first);
  ASSERT_TRUE(held.ok());
  const auto started = std::chrono::steady_clock::now();
  auto blocked = Transaction::Begin(*second);
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable) << blocked.status();
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  // Released in time, the second writer goes ahead.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(held->Commit().ok());
  });
  auto later = Transaction::Begin(*second);
  release.join();
  EXPECT_TRUE(later.ok()) << later.status();
}

TEST_F(SqliteTest, MigrationsApplyOnceInOrderAndRefuseANewerSchema) {
  const Migration v1[] = {{1, "create", "CREATE TABLE a (x INTEGER)"}};
  const Migration v2[] = {{1, "create", "CREATE TABLE a (x INTEGER)"},
                          {2, "add b", "CREATE TABLE b (y INTEGER); INSERT INTO b VALUES (1)"}};
  {
    auto db = Open();
    ASSERT_TRUE(Migrate(*db, v1, 1000, "test").ok());
    ASSERT_TRUE(Migrate(*db, v1, 2000, "test").ok()) << "applying again is a no-op";
    ASSERT_TRUE(Migrate(*db, v2, 3000, "test").ok());
    ASSERT_TRUE(Migrate(*db, v2, 4000, "test").ok());
    EXPECT_EQ(Count(*db, "b"), 1) << "migration 2 ran once";
    auto s = db->Prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version");
    std::vector<std::tuple<std::int64_t, std::string, std::int64_t>> rows;
    while (true) {
      auto row = s->Step();
      ASSERT_TRUE(row.ok());
      if (!*row) break;
      rows.emplace_back(s->Int(0), s->Text(1), s->Int(2));
    }
    EXPECT_EQ(rows, (decltype(rows){{1, "create", 1000}, {2, "add b", 3000}}));
  }
  // An older release on the newer file changes nothing and says why.
  auto db = Open();
  absl::Status older = Migrate(*db, v1, 5000, "test");
  EXPECT_EQ(older.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(older.message()), HasSubstr("schema version 2"));

  // A migration that fails leaves neither its changes nor its record.
  const Migration broken[] = {v2[0], v2[1], {3, "half", "CREATE TABLE c (z INTEGER); NOT SQL"}};
  absl::Status failed = Migrate(*db, broken, 6000, "test");
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.message()), HasSubstr("migration 3 (half)"));
  EXPECT_FALSE(db->Prepare("SELECT * FROM c").ok()) << "rolled back";
  EXPECT_EQ(Count(*db, "schema_migrations"), 2);

  const Migration unordered[] = {v2[1], v2[0]};
  EXPECT_EQ(Migrate(*db, unordered, 7000, "test").code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace strata::sqlite
