// The storage conformance suite: the same cases against both backends, SQLite (a file in a
// temporary directory) and PostgreSQL (a fresh database on the harness's server), plus the
// PostgreSQL-only behaviour (partitions, concurrency, reconnection).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "storage/codec.h"
#include "storage/migrations.h"
#include "storage/store.h"
#include "strata/telemetry/model.h"
#include "support/pg_server.h"
#include "support/process.h"

namespace {

using strata::storage::AggregateQuery;
using strata::storage::AlarmCursor;
using strata::storage::AlarmListQuery;
using strata::storage::AlarmRaise;
using strata::storage::Database;
using strata::storage::DatabaseOptions;
using strata::storage::DeviceListQuery;
using strata::storage::DeviceUpdate;
using strata::storage::kDefaultTenant;
using strata::storage::OpenDatabase;
using strata::storage::Point;
using strata::storage::TelemetryCursor;
using strata::storage::TelemetryQuery;
namespace v1 = strata::v1;
using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Strings that break naive SQL or COPY quoting; each must come back byte for byte.
const std::vector<std::string> kNastyStrings = {
    "x'); DROP TABLE devices; --", "quote\"double", "back\\slash\\", "tab\there\nnewline\r", "\\N",
    "it's", "100%_like", "ünïcødé ✓", "{\"json\": [1, 2]}", "$1 ?1 :name",
};

constexpr std::int64_t kT0 = 1700000000000;  // 2023-11-14, a day long gone
constexpr std::int64_t kDay = 86'400'000;

v1::Value D(double v) { v1::Value x; x.set_double_value(v); return x; }
v1::Value I(std::int64_t v) { v1::Value x; x.set_int_value(v); return x; }
v1::Value B(bool v) { v1::Value x; x.set_bool_value(v); return x; }
v1::Value S(std::string v) { v1::Value x; x.set_string_value(std::move(v)); return x; }

Point P(std::string key, std::int64_t ts, v1::Value value) { return Point{std::move(key), ts, std::move(value)}; }

v1::Device MakeDevice(const std::string& id, std::vector<std::pair<std::string, std::string>> labels = {}) {
  v1::Device d;
  d.set_device_id(id);
  d.set_name("name of " + id);
  d.set_type("thermometer");
  for (auto& [k, v] : labels) (*d.mutable_labels())[k] = v;
  (*d.mutable_attributes())["fw"] = "1.2.3";
  return d;
}

v1::EdgeReading R(std::uint64_t seq, std::string device, std::string key, std::int64_t ts, v1::Value v) {
  v1::EdgeReading r;
  r.set_seq(seq);
  r.set_device_id(std::move(device));
  r.set_key(std::move(key));
  r.set_ts(ts);
  *r.mutable_value() = std::move(v);
  return r;
}

v1::TelemetryBatch Batch(std::uint64_t first, std::uint64_t last, std::vector<v1::EdgeReading> readings) {
  v1::TelemetryBatch b;
  b.set_first_seq(first);
  b.set_last_seq(last);
  for (auto& r : readings) *b.add_readings() = std::move(r);
  return b;
}

// (key, ts) pairs of readings, for compact expectations.
std::vector<std::pair<std::string, std::int64_t>> Keys(const std::vector<v1::Reading>& rs) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto& r : rs) out.emplace_back(r.key(), r.ts());
  return out;
}

class StorageTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (IsPostgres()) {
      url_ = strata::testing::SharedPgServer().CreateDatabase();
    } else {
      url_ = "sqlite://" + tmp_.path() + "/strata.db";
    }
    db_ = Open();
    ASSERT_NE(db_, nullptr);
  }

  bool IsPostgres() const { return GetParam() == "postgresql"; }

  std::unique_ptr<Database> Open() {
    auto db = OpenDatabase(DatabaseOptions{.url = url_, .pool_size = 4, .clock = [this] { return now_.load(); }});
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? *std::move(db) : nullptr;
  }

  v1::Device Create(const std::string& id, std::vector<std::pair<std::string, std::string>> labels = {}) {
    auto d = db_->Devices().CreateDevice(kDefaultTenant, MakeDevice(id, std::move(labels)));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : v1::Device();
  }

  std::vector<v1::Reading> QueryAll(const std::string& device, bool descending = false) {
    TelemetryQuery q;
    q.device_id = device;
    q.limit = 100000;
    q.descending = descending;
    auto r = db_->Telemetry().Query(kDefaultTenant, q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<v1::Reading>{};
  }

  strata::testing::TempDir tmp_;
  std::string url_;
  // The stores' clock: a real one (partitions are made for "today"), moved by the tests that
  // check output times.
  std::atomic<std::int64_t> now_{strata::NowMs()};
  std::unique_ptr<Database> db_;
};

// ---- database -------------------------------------------------------------------------------

TEST_P(StorageTest, PingAndBackend) {
  EXPECT_TRUE(db_->Ping().ok());
  EXPECT_EQ(db_->Backend(), GetParam());
}

TEST_P(StorageTest, OutputTimesComeFromTheInjectedClock) {
  now_ = 1'800'000'000'000;
  v1::Device created = Create("clocked");
  EXPECT_EQ(created.created_at(), 1'800'000'000'000);
  EXPECT_EQ(created.updated_at(), 1'800'000'000'000);
  now_ = 1'800'000'000'500;
  v1::Device change = MakeDevice("clocked", {});
  change.set_name("renamed");
  DeviceUpdate fields;
  fields.name = true;
  auto updated = db_->Devices().UpdateDevice(kDefaultTenant, change, fields);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->created_at(), 1'800'000'000'000);
  EXPECT_EQ(updated->updated_at(), 1'800'000'000'500);
  v1::Edge edge;
  edge.set_edge_id("gw-clocked");
  auto e = db_->Edges().CreateEdge(kDefaultTenant, edge);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->created_at(), 1'800'000'000'500);
  auto got = db_->Edges().GetEdge(kDefaultTenant, "gw-clocked");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->updated_at(), 1'800'000'000'500) << "as stored, not only as returned";
}

TEST_P(StorageTest, ReopeningKeepsDataAndAppliesNoMigrationTwice) {
  Create("dev-1");
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, D(1.5))}).ok());
  db_.reset();
  for (int i = 0; i < 2; ++i) {
    auto db = Open();
    ASSERT_NE(db, nullptr);
    auto d = db->Devices().GetDevice(kDefaultTenant, "dev-1");
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->name(), "name of dev-1");
    TelemetryQuery q;
    q.device_id = "dev-1";
    auto rs = db->Telemetry().Query(kDefaultTenant, q);
    ASSERT_TRUE(rs.ok()) << rs.status();
    ASSERT_EQ(rs->size(), 1u);
    EXPECT_DOUBLE_EQ((*rs)[0].value().double_value(), 1.5);
  }
}

TEST(OpenDatabaseTest, UnknownSchemeIsInvalidArgument) {
  auto db = OpenDatabase(DatabaseOptions{.url = "mysql://localhost/x"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument);
  db = OpenDatabase(DatabaseOptions{.url = "no-scheme-at-all"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OpenDatabaseTest, UnreachablePostgresIsUnavailable) {
  const unsigned short port = strata::testing::FreePort();  // nothing listens there
  auto db = OpenDatabase(
      DatabaseOptions{.url = "postgresql://strata@127.0.0.1:" + std::to_string(port) + "/x?connect_timeout=5"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
}

TEST(OpenDatabaseTest, UnopenableSqliteIsUnavailable) {
  auto db = OpenDatabase(DatabaseOptions{.url = "sqlite:///nonexistent-dir/strata/x.db"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
}

// ---- devices --------------------------------------------------------------------------------

TEST_P(StorageTest, CreateAndGetDevice) {
  v1::Device created = Create("dev-1", {{"site", "berlin"}});
  EXPECT_EQ(created.tenant_id(), kDefaultTenant);
  EXPECT_GT(created.created_at(), 0);
  EXPECT_EQ(created.updated_at(), created.created_at());
  EXPECT_EQ(created.last_seen_at(), 0);

  auto got = db_->Devices().GetDevice(kDefaultTenant, "dev-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->device_id(), "dev-1");
  EXPECT_EQ(got->tenant_id(), kDefaultTenant);
  EXPECT_EQ(got->name(), "name of dev-1");
  EXPECT_EQ(got->type(), "thermometer");
  EXPECT_THAT(got->labels(), UnorderedElementsAre(Pair("site", "berlin")));
  EXPECT_THAT(got->attributes(), UnorderedElementsAre(Pair("fw", "1.2.3")));
  EXPECT_EQ(got->created_at(), created.created_at());
  EXPECT_EQ(got->last_seen_at(), 0);
}

TEST_P(StorageTest, DuplicateDeviceIsAlreadyExists) {
  Create("dev-1");
  auto again = db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("dev-1"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
}

TEST_P(StorageTest, TenantsAreSeparate) {
  Create("dev-1");
  auto other = db_->Devices().CreateDevice("tenant-b", MakeDevice("dev-1"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->tenant_id(), "tenant-b");
  EXPECT_EQ(db_->Devices().GetDevice("tenant-c", "dev-1").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(db_->Telemetry().Write("tenant-b", "dev-1", {P("t", kT0, I(7))}).ok());
  EXPECT_TRUE(QueryAll("dev-1").empty());  // default tenant's dev-1 has none
  auto list = db_->Devices().ListDevices("tenant-b", DeviceListQuery{});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
}

TEST_P(StorageTest, MissingDeviceIsNotFound) {
  EXPECT_EQ(db_->Devices().GetDevice(kDefaultTenant, "nope").status().code(), absl::StatusCode::kNotFound);
  DeviceUpdate all{.name = true, .type = true, .labels = true, .attributes = true};
  EXPECT_EQ(db_->Devices().UpdateDevice(kDefaultTenant, MakeDevice("nope"), all).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Devices().DeleteDevice(kDefaultTenant, "nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Telemetry().Write(kDefaultTenant, "nope", {P("t", kT0, D(1))}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Telemetry().Write(kDefaultTenant, "nope", {}).code(), absl::StatusCode::kNotFound);
}

TEST_P(StorageTest, ListDevicesPagesInIdOrder) {
  for (const char* id : {"d05", "d01", "d07", "d03", "d02", "d06", "d04"}) Create(id);
  DeviceListQuery q;
  q.page_size = 3;
  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  while (true) {
    auto page = db_->Devices().ListDevices(kDefaultTenant, q);
    ASSERT_TRUE(page.ok()) << page.status();
    page_sizes.push_back(page->size());
    const size_t take = std::min<size_t>(page->size(), 3);
    for (size_t i = 0; i < take; ++i) seen.push_back((*page)[i].device_id());
    if (page->size() <= 3) break;
    q.after_device_id = seen.back();
  }
  EXPECT_THAT(page_sizes, ElementsAre(4, 4, 1));  // page_size + 1 tells there is more
  EXPECT_THAT(seen, ElementsAre("d01", "d02", "d03", "d04", "d05", "d06", "d07"));
}

TEST_P(StorageTest, ListDevicesFiltersByEveryLabel) {
  Create("a", {{"site", "berlin"}, {"kind", "pump"}});
  Create("b", {{"site", "berlin"}, {"kind", "valve"}});
  Create("c", {{"site", "paris"}, {"kind", "pump"}});
  Create("d");
  auto ids = [&](std::vector<std::pair<std::string, std::string>> labels) {
    DeviceListQuery q;
    q.labels = std::move(labels);
    auto r = db_->Devices().ListDevices(kDefaultTenant, q);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> out;
    if (r.ok()) for (const auto& d : *r) out.push_back(d.device_id());
    return out;
  };
  EXPECT_THAT(ids({{"site", "berlin"}}), ElementsAre("a", "b"));
  EXPECT_THAT(ids({{"kind", "pump"}}), ElementsAre("a", "c"));
  EXPECT_THAT(ids({{"site", "berlin"}, {"kind", "pump"}}), ElementsAre("a"));
  EXPECT_THAT(ids({{"site", "rome"}}), ElementsAre());
  EXPECT_THAT(ids({{"site", "berlin"}, {"site", "paris"}}), ElementsAre());
  EXPECT_THAT(ids({}), ElementsAre("a", "b", "c", "d"));
}

TEST_P(StorageTest, UpdateDeviceChangesOnlyChosenFields) {
  v1::Device created = Create("dev-1", {{"site", "berlin"}});
  v1::Device change;
  change.set_device_id("dev-1");
  change.set_name("renamed");
  change.set_type("ignored type");
  (*change.mutable_labels())["site"] = "paris";
  (*change.mutable_labels())["floor"] = "2";
  (*change.mutable_attributes())["ignored"] = "yes";
  auto updated = db_->Devices().UpdateDevice(kDefaultTenant, change, DeviceUpdate{.name = true, .labels = true});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->name(), "renamed");
  EXPECT_EQ(updated->type(), "thermometer");
  EXPECT_THAT(updated->labels(), UnorderedElementsAre(Pair("site", "paris"), Pair("floor", "2")));
  EXPECT_THAT(updated->attributes(), UnorderedElementsAre(Pair("fw", "1.2.3")));
  EXPECT_EQ(updated->created_at(), created.created_at());
  EXPECT_GE(updated->updated_at(), created.updated_at());

  auto got = db_->Devices().GetDevice(kDefaultTenant, "dev-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->name(), "renamed");
  EXPECT_EQ(got->type(), "thermometer");

  // Clearing a map is a change too.
  v1::Device clear;
  clear.set_device_id("dev-1");
  updated = db_->Devices().UpdateDevice(kDefaultTenant, clear, DeviceUpdate{.type = true, .attributes = true});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->type(), "");
  EXPECT_TRUE(updated->attributes().empty());
  EXPECT_EQ(updated->labels().size(), 2u);
}

TEST_P(StorageTest, DeleteDeviceRemovesItsTelemetry) {
  Create("dev-1");
  Create("dev-2");
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, D(1)), P("u", kT0, I(2))}).ok());
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-2", {P("t", kT0, D(3))}).ok());
  ASSERT_TRUE(db_->Devices().DeleteDevice(kDefaultTenant, "dev-1").ok());
  EXPECT_EQ(db_->Devices().GetDevice(kDefaultTenant, "dev-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Devices().DeleteDevice(kDefaultTenant, "dev-1").code(), absl::StatusCode::kNotFound);

  Create("dev-1");  // same id again starts empty
  EXPECT_TRUE(QueryAll("dev-1").empty());
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "dev-1", {});
  ASSERT_TRUE(latest.ok());
  EXPECT_TRUE(latest->empty());
  EXPECT_EQ(QueryAll("dev-2").size(), 1u);  // others untouched
}

// ---- edges ----------------------------------------------------------------------------------

TEST_P(StorageTest, EdgesCreateGetListTouch) {
  v1::Edge e;
  e.set_edge_id("edge-b");
  e.set_name("Gateway B");
  (*e.mutable_labels())["site"] = "berlin";
  auto created = db_->Edges().CreateEdge(kDefaultTenant, e);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->high_water_mark(), 0u);
  EXPECT_EQ(db_->Edges().CreateEdge(kDefaultTenant, e).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(db_->Edges().GetEdge(kDefaultTenant, "nope").status().code(), absl::StatusCode::kNotFound);

  auto got = db_->Edges().GetEdge(kDefaultTenant, "edge-b");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->name(), "Gateway B");
  EXPECT_THAT(got->labels(), UnorderedElementsAre(Pair("site", "berlin")));
  EXPECT_EQ(got->last_seen_at(), 0);

  // TouchEdge enrols an unknown edge and records when it was seen.
  auto mark = db_->Edges().TouchEdge(kDefaultTenant, "edge-a", 5000);
  ASSERT_TRUE(mark.ok()) << mark.status();
  EXPECT_EQ(mark->high_water_mark, 0u);
  mark = db_->Edges().TouchEdge(kDefaultTenant, "edge-b", 6000);
  ASSERT_TRUE(mark.ok());
  got = db_->Edges().GetEdge(kDefaultTenant, "edge-b");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->last_seen_at(), 6000);
  EXPECT_EQ(got->name(), "Gateway B");

  auto page = db_->Edges().ListEdges(kDefaultTenant, 1, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].edge_id(), "edge-a");
  EXPECT_EQ((*page)[0].last_seen_at(), 5000);
  page = db_->Edges().ListEdges(kDefaultTenant, 1, "edge-a");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].edge_id(), "edge-b");
}

// ---- config revisions ----------------------------------------------------------------------

TEST_P(StorageTest, EveryDeviceChangeOfAnEdgeRaisesItsConfigRevisionAndNothingElseDoes) {
  auto revision = [&] {
    auto st = db_->Edges().GetConfigState(kDefaultTenant, "gw-1");
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? st->desired : 0;
  };
  EXPECT_EQ(db_->Edges().GetConfigState(kDefaultTenant, "gw-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-1").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(db_->Edges().TouchEdge(kDefaultTenant, "gw-1", 1).ok());
  EXPECT_EQ(revision(), 1u) << "a new edge starts at revision 1";
  auto config = db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-1");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->revision(), 1u);
  EXPECT_EQ(config->devices_size(), 0);

  v1::Device d = MakeDevice("pump-1");
  d.set_edge_id("gw-1");
  d.set_type("pump");
  (*d.mutable_attributes())["max_rpm"] = "3000";
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
  EXPECT_EQ(revision(), 2u) << "a device assigned to the edge";
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("elsewhere")).ok());
  EXPECT_EQ(revision(), 2u) << "a device of no edge";

  DeviceUpdate name_only;
  name_only.name = true;
  d.set_name("Pump one");
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, d, name_only).ok());
  EXPECT_EQ(revision(), 2u) << "the name is not part of the edge's configuration";
  DeviceUpdate attributes;
  attributes.attributes = true;
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, d, attributes).ok());
  EXPECT_EQ(revision(), 2u) << "attributes set to what they were";
  (*d.mutable_attributes())["max_rpm"] = "2500";
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, d, attributes).ok());
  EXPECT_EQ(revision(), 3u);

  // Readings through the edge move last_seen_at and the mark; an unknown device it brings
  // is registered with edge_id set, which is a change of its configuration.
  auto session = db_->Edges().TouchEdge(kDefaultTenant, "gw-1", 2);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(db_->Telemetry()
                  .ApplyEdgeBatch(kDefaultTenant, "gw-1", Batch(1, 1, {R(1, "pump-1", "t", kT0, I(1))}), 3,
                                  session->epoch)
                  .ok());
  EXPECT_EQ(revision(), 3u) << "telemetry is not configuration";
  ASSERT_TRUE(db_->Telemetry()
                  .ApplyEdgeBatch(kDefaultTenant, "gw-1", Batch(2, 2, {R(2, "valve-9", "t", kT0, I(1))}), 4,
                                  session->epoch)
                  .ok());
  EXPECT_EQ(revision(), 4u) << "a device the edge registered";

  config = db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-1");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->revision(), 4u);
  ASSERT_EQ(config->devices_size(), 2);
  EXPECT_EQ(config->devices(0).device_id(), "pump-1");
  EXPECT_EQ(config->devices(0).type(), "pump");
  EXPECT_THAT(config->devices(0).attributes(), UnorderedElementsAre(Pair("fw", "1.2.3"), Pair("max_rpm", "2500")));
  EXPECT_EQ(config->devices(1).device_id(), "valve-9");

  // Another edge that hears the device does not take it over (nor make either edge a
  // revision): a device moves between edges only through the registry.
  auto other = db_->Edges().TouchEdge(kDefaultTenant, "gw-other", 5);
  ASSERT_TRUE(other.ok());
  const std::uint64_t other_before = db_->Edges().GetConfigState(kDefaultTenant, "gw-other")->desired;
  ASSERT_TRUE(db_->Telemetry()
                  .ApplyEdgeBatch(kDefaultTenant, "gw-other", Batch(1, 1, {R(1, "valve-9", "t", kT0 + 1, I(2))}), 6,
                                  other->epoch)
                  .ok());
  EXPECT_EQ(db_->Devices().GetDevice(kDefaultTenant, "valve-9")->edge_id(), "gw-1");
  EXPECT_EQ(revision(), 4u);
  EXPECT_EQ(db_->Edges().GetConfigState(kDefaultTenant, "gw-other")->desired, other_before);

  ASSERT_TRUE(db_->Devices().DeleteDevice(kDefaultTenant, "valve-9").ok());
  EXPECT_EQ(revision(), 5u);
  config = db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-1");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->devices_size(), 1);
}

TEST_P(StorageTest, MovingADeviceMakesARevisionForBothEdges) {
  ASSERT_TRUE(db_->Edges().TouchEdge(kDefaultTenant, "gw-from", 1).ok());
  ASSERT_TRUE(db_->Edges().TouchEdge(kDefaultTenant, "gw-to", 1).ok());
  v1::Device d = MakeDevice("mover");
  d.set_edge_id("gw-from");
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
  auto desired = [&](const char* edge) { return db_->Edges().GetConfigState(kDefaultTenant, edge)->desired; };
  const std::uint64_t from = desired("gw-from"), to = desired("gw-to");
  DeviceUpdate move;
  move.edge_id = true;
  d.set_edge_id("gw-to");
  auto moved = db_->Devices().UpdateDevice(kDefaultTenant, d, move);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->edge_id(), "gw-to");
  EXPECT_EQ(desired("gw-from"), from + 1);
  EXPECT_EQ(desired("gw-to"), to + 1);
  EXPECT_EQ(db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-from")->devices_size(), 0);
  ASSERT_EQ(db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-to")->devices_size(), 1);
  d.set_edge_id("");
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, d, move).ok());
  EXPECT_EQ(desired("gw-to"), to + 2);
  EXPECT_EQ(db_->Devices().GetDevice(kDefaultTenant, "mover")->edge_id(), "");
}

TEST_P(StorageTest, ConfigAcksMoveTheAppliedRevisionForwardOnly) {
  ASSERT_TRUE(db_->Edges().TouchEdge(kDefaultTenant, "gw-2", 1).ok());
  for (int i = 0; i < 3; ++i) {
    v1::Device d = MakeDevice("d" + std::to_string(i));
    d.set_edge_id("gw-2");
    ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
  }
  auto ack = [](std::uint64_t revision, bool applied, std::string error = "") {
    v1::ConfigAck a;
    a.set_revision(revision);
    a.set_applied(applied);
    a.set_error(std::move(error));
    return a;
  };
  ASSERT_TRUE(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(3, true), 100).ok());
  auto edge = db_->Edges().GetEdge(kDefaultTenant, "gw-2");
  ASSERT_TRUE(edge.ok());
  EXPECT_EQ(edge->config_revision(), 4u);
  EXPECT_EQ(edge->applied_revision(), 3u);
  EXPECT_EQ(edge->applied_at(), 100);

  ASSERT_TRUE(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(2, true), 200).ok());
  ASSERT_TRUE(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(9, true), 300).ok());
  edge = db_->Edges().GetEdge(kDefaultTenant, "gw-2");
  ASSERT_TRUE(edge.ok());
  EXPECT_EQ(edge->applied_revision(), 3u) << "neither back nor past the desired revision";
  EXPECT_EQ(edge->applied_at(), 100);

  ASSERT_TRUE(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(4, false, "devices[0] is bad"), 400).ok());
  edge = db_->Edges().GetEdge(kDefaultTenant, "gw-2");
  ASSERT_TRUE(edge.ok());
  EXPECT_EQ(edge->applied_revision(), 3u) << "a refused revision is not applied";
  EXPECT_EQ(edge->config_error(), "revision 4: devices[0] is bad");
  auto state = db_->Edges().GetConfigState(kDefaultTenant, "gw-2");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->desired, 4u);
  EXPECT_EQ(state->applied, 3u);

  EXPECT_EQ(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(0, true), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(4, false, std::string("a\0b", 3)), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_->Edges().RecordConfigAck(kDefaultTenant, "gw-2", ack(4, false, "\xff"), 1).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- telemetry ------------------------------------------------------------------------------

TEST_P(StorageTest, WriteAndQueryEveryValueKind) {
  Create("dev-1");
  ASSERT_TRUE(db_->Telemetry()
                  .Write(kDefaultTenant, "dev-1",
                         {P("d", kT0, D(21.5)), P("i", kT0, I(-9007199254740993)), P("b", kT0, B(true)),
                          P("s", kT0, S("hello\tworld\\")), P("e", kT0 + 1, D(1e-300)), P("z", kT0 + 1, D(3.0)),
                          P("f", kT0 + 1, B(false)), P("inf", kT0 + 1, D(-std::numeric_limits<double>::infinity()))})
                  .ok());
  auto rs = QueryAll("dev-1");
  ASSERT_EQ(rs.size(), 8u);
  EXPECT_THAT(Keys(rs), ElementsAre(Pair("b", kT0), Pair("d", kT0), Pair("i", kT0), Pair("s", kT0),
                                    Pair("e", kT0 + 1), Pair("f", kT0 + 1), Pair("inf", kT0 + 1), Pair("z", kT0 + 1)));
  EXPECT_EQ(rs[0].device_id(), "dev-1");
  EXPECT_EQ(rs[0].value().kind_case(), v1::Value::kBoolValue);
  EXPECT_TRUE(rs[0].value().bool_value());
  EXPECT_EQ(rs[1].value().kind_case(), v1::Value::kDoubleValue);
  EXPECT_EQ(rs[1].value().double_value(), 21.5);
  EXPECT_EQ(rs[2].value().kind_case(), v1::Value::kIntValue);
  EXPECT_EQ(rs[2].value().int_value(), -9007199254740993);
  EXPECT_EQ(rs[3].value().kind_case(), v1::Value::kStringValue);
  EXPECT_EQ(rs[3].value().string_value(), "hello\tworld\\");
  EXPECT_EQ(rs[4].value().double_value(), 1e-300);
  EXPECT_EQ(rs[5].value().kind_case(), v1::Value::kBoolValue);
  EXPECT_FALSE(rs[5].value().bool_value());
  EXPECT_EQ(rs[6].value().double_value(), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(rs[7].value().kind_case(), v1::Value::kDoubleValue);  // 3.0 stays a double
  EXPECT_EQ(rs[7].value().double_value(), 3.0);

  auto device = db_->Devices().GetDevice(kDefaultTenant, "dev-1");
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->last_seen_at(), kT0 + 1);
}

TEST_P(StorageTest, WriteRefusesEmptyValuesAndKeys) {
  Create("dev-1");
  EXPECT_EQ(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, v1::Value())}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("", kT0, D(1))}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(QueryAll("dev-1").empty());
}

TEST_P(StorageTest, LastWriteWinsAcrossWritesAndWithinABatch) {
  Create("dev-1");
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, D(1)), P("u", kT0, I(1))}).ok());
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, S("now a string"))}).ok());
  // Within one batch the later item wins.
  ASSERT_TRUE(db_->Telemetry()
                  .Write(kDefaultTenant, "dev-1", {P("u", kT0, I(2)), P("u", kT0, I(3)), P("v", kT0, D(1)),
                                                   P("u", kT0, I(4)), P("v", kT0, B(true))})
                  .ok());
  auto rs = QueryAll("dev-1");
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].key(), "t");
  EXPECT_EQ(rs[0].value().string_value(), "now a string");
  EXPECT_EQ(rs[1].key(), "u");
  EXPECT_EQ(rs[1].value().int_value(), 4);
  EXPECT_EQ(rs[2].key(), "v");
  EXPECT_EQ(rs[2].value().kind_case(), v1::Value::kBoolValue);

  auto latest = db_->Telemetry().Latest(kDefaultTenant, "dev-1", {"u", "v"});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ((*latest)[0].value().int_value(), 4);
  EXPECT_TRUE((*latest)[1].value().bool_value());
}

class QueryTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    Create("dev-1");
    Create("dev-2");
    std::vector<Point> points;
    for (int i = 0; i < 5; ++i) {
      for (const char* key : {"a", "b", "c"}) points.push_back(P(key, kT0 + i * 1000, I(i)));
    }
    ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", points).ok());
    ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-2", {P("a", kT0, I(100))}).ok());
  }

  std::vector<v1::Reading> Run(TelemetryQuery q) {
    q.device_id = "dev-1";
    auto r = db_->Telemetry().Query(kDefaultTenant, q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<v1::Reading>{};
  }
};

TEST_P(QueryTest, OrdersByTsThenKey) {
  const auto asc = Keys(Run({}));
  ASSERT_EQ(asc.size(), 15u);
  EXPECT_THAT(std::vector(asc.begin(), asc.begin() + 4),
              ElementsAre(Pair("a", kT0), Pair("b", kT0), Pair("c", kT0), Pair("a", kT0 + 1000)));
  const auto desc = Keys(Run({.descending = true}));
  ASSERT_EQ(desc.size(), 15u);
  EXPECT_THAT(std::vector(desc.begin(), desc.begin() + 4),
              ElementsAre(Pair("c", kT0 + 4000), Pair("b", kT0 + 4000), Pair("a", kT0 + 4000), Pair("c", kT0 + 3000)));
  auto reversed = asc;
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_EQ(desc, reversed);
}

TEST_P(QueryTest, ReturnsUpToLimitPlusOne) {
  EXPECT_EQ(Run({.limit = 4}).size(), 5u);
  EXPECT_EQ(Run({.limit = 14}).size(), 15u);
  EXPECT_EQ(Run({.limit = 15}).size(), 15u);
  EXPECT_EQ(Run({.limit = 1000}).size(), 15u);
}

TEST_P(QueryTest, CursorPagesThroughEverythingInBothDirections) {
  for (bool descending : {false, true}) {
    std::vector<std::pair<std::string, std::int64_t>> seen;
    TelemetryQuery q{.limit = 4, .descending = descending};
    int pages = 0;
    while (true) {
      auto page = Run(q);
      ++pages;
      ASSERT_LE(pages, 10);
      const size_t take = std::min<size_t>(page.size(), 4);
      for (size_t i = 0; i < take; ++i) seen.emplace_back(page[i].key(), page[i].ts());
      if (page.size() <= 4) break;
      q.after = TelemetryCursor{.ts = page[3].ts(), .key = page[3].key()};
    }
    EXPECT_EQ(pages, 4);
    EXPECT_EQ(seen, Keys(Run({.descending = descending}))) << "descending=" << descending;
  }
}

TEST_P(QueryTest, FiltersByKeysAndRange) {
  EXPECT_THAT(Keys(Run({.keys = {"c", "a"}, .start = kT0 + 1000, .end = kT0 + 3000})),
              ElementsAre(Pair("a", kT0 + 1000), Pair("c", kT0 + 1000), Pair("a", kT0 + 2000), Pair("c", kT0 + 2000)));
  // end is exclusive, start inclusive; end 0 means no bound.
  EXPECT_EQ(Run({.keys = {"b"}, .start = kT0 + 3000}).size(), 2u);
  EXPECT_EQ(Run({.keys = {"b"}, .start = kT0 + 3000, .end = kT0 + 3001}).size(), 1u);
  EXPECT_EQ(Run({.keys = {"b"}, .start = kT0 + 3001, .end = kT0 + 4000}).size(), 0u);
  EXPECT_EQ(Run({.keys = {"nope"}}).size(), 0u);
  auto desc = Run({.keys = {"b"}, .start = kT0 + 1000, .end = kT0 + 4000, .descending = true});
  EXPECT_THAT(Keys(desc), ElementsAre(Pair("b", kT0 + 3000), Pair("b", kT0 + 2000), Pair("b", kT0 + 1000)));
}

TEST_P(StorageTest, LatestKeepsTheNewestValue) {
  Create("dev-1");
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0 + 10, D(2)), P("u", kT0, I(1))}).ok());
  // Older: no change. Same ts: replaces. Newer: replaces.
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0 + 5, D(1))}).ok());
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("u", kT0, I(5))}).ok());
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("a", kT0 + 20, S("x")), P("a", kT0 + 30, S("y")),
                                                                P("a", kT0 + 25, S("z"))}).ok());
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "dev-1", {});
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_THAT(Keys(*latest), ElementsAre(Pair("a", kT0 + 30), Pair("t", kT0 + 10), Pair("u", kT0)));
  EXPECT_EQ((*latest)[0].value().string_value(), "y");
  EXPECT_EQ((*latest)[1].value().double_value(), 2);
  EXPECT_EQ((*latest)[2].value().int_value(), 5);
  EXPECT_EQ((*latest)[0].device_id(), "dev-1");

  auto some = db_->Telemetry().Latest(kDefaultTenant, "dev-1", {"u", "missing", "t"});
  ASSERT_TRUE(some.ok());
  EXPECT_THAT(Keys(*some), ElementsAre(Pair("t", kT0 + 10), Pair("u", kT0)));

  auto device = db_->Devices().GetDevice(kDefaultTenant, "dev-1");
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->last_seen_at(), kT0 + 30);  // the older write did not move it back
}

// ---- aggregation ----------------------------------------------------------------------------

class AggregateTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    Create("dev-1");
    // Buckets of 100 ms from kT0: [0,100) [100,200) [200,300) [300,400).
    ASSERT_TRUE(db_->Telemetry()
                    .Write(kDefaultTenant, "dev-1",
                           {// "mixed": ints and doubles together
                            P("mixed", kT0 + 0, I(1)), P("mixed", kT0 + 50, D(2.5)), P("mixed", kT0 + 99, I(6)),
                            P("mixed", kT0 + 250, D(-1)), P("mixed", kT0 + 251, B(true)),
                            P("mixed", kT0 + 252, S("ignored")), P("mixed", kT0 + 400, I(1000)),  // past end
                            P("mixed", kT0 - 1, I(1000)),                                         // before start
                            // "dbl": doubles only
                            P("dbl", kT0 + 120, D(10)), P("dbl", kT0 + 180, D(20)), P("dbl", kT0 + 399, D(5)),
                            // "text": no numbers at all
                            P("text", kT0 + 10, S("a"))})
                    .ok());
  }

  std::vector<v1::AggregateSeries> Run(v1::AggregationFunction f, std::vector<std::string> keys) {
    AggregateQuery q{.device_id = "dev-1", .keys = std::move(keys), .start = kT0, .end = kT0 + 400,
                     .interval = 100, .function = f};
    auto r = db_->Telemetry().Aggregate(kDefaultTenant, q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<v1::AggregateSeries>{};
  }

  // (bucket offset from kT0, value, count) of a series.
  static std::vector<std::tuple<std::int64_t, double, std::int64_t>> Buckets(const v1::AggregateSeries& s) {
    std::vector<std::tuple<std::int64_t, double, std::int64_t>> out;
    for (const auto& b : s.buckets()) out.emplace_back(b.ts() - kT0, b.value(), b.count());
    return out;
  }
};

TEST_P(AggregateTest, EveryFunctionOverSeveralKeysAndBuckets) {
  using T = std::tuple<std::int64_t, double, std::int64_t>;
  struct Case {
    v1::AggregationFunction f;
    std::vector<T> mixed, dbl;
  };
  const std::vector<Case> cases = {
      {v1::AGGREGATION_FUNCTION_AVG, {T{0, 9.5 / 3, 3}, T{200, -1, 1}}, {T{100, 15, 2}, T{300, 5, 1}}},
      {v1::AGGREGATION_FUNCTION_MIN, {T{0, 1, 3}, T{200, -1, 1}}, {T{100, 10, 2}, T{300, 5, 1}}},
      {v1::AGGREGATION_FUNCTION_MAX, {T{0, 6, 3}, T{200, -1, 1}}, {T{100, 20, 2}, T{300, 5, 1}}},
      {v1::AGGREGATION_FUNCTION_SUM, {T{0, 9.5, 3}, T{200, -1, 1}}, {T{100, 30, 2}, T{300, 5, 1}}},
      {v1::AGGREGATION_FUNCTION_COUNT, {T{0, 3, 3}, T{200, 1, 1}}, {T{100, 2, 2}, T{300, 1, 1}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(v1::AggregationFunction_Name(c.f));
    // Series come back in request order, including keys without numeric data.
    auto series = Run(c.f, {"text", "mixed", "none", "dbl"});
    ASSERT_EQ(series.size(), 4u);
    EXPECT_EQ(series[0].key(), "text");
    EXPECT_EQ(series[0].buckets_size(), 0);
    EXPECT_EQ(series[1].key(), "mixed");
    EXPECT_EQ(series[2].key(), "none");
    EXPECT_EQ(series[2].buckets_size(), 0);
    EXPECT_EQ(series[3].key(), "dbl");
    auto mixed = Buckets(series[1]);
    auto dbl = Buckets(series[3]);
    ASSERT_EQ(mixed.size(), c.mixed.size());
    ASSERT_EQ(dbl.size(), c.dbl.size());
    for (size_t i = 0; i < mixed.size(); ++i) {
      EXPECT_EQ(std::get<0>(mixed[i]), std::get<0>(c.mixed[i]));
      EXPECT_DOUBLE_EQ(std::get<1>(mixed[i]), std::get<1>(c.mixed[i]));
      EXPECT_EQ(std::get<2>(mixed[i]), std::get<2>(c.mixed[i]));
    }
    for (size_t i = 0; i < dbl.size(); ++i) {
      EXPECT_EQ(std::get<0>(dbl[i]), std::get<0>(c.dbl[i]));
      EXPECT_DOUBLE_EQ(std::get<1>(dbl[i]), std::get<1>(c.dbl[i]));
      EXPECT_EQ(std::get<2>(dbl[i]), std::get<2>(c.dbl[i]));
    }
  }
}

TEST_P(AggregateTest, BucketsAlignToStart) {
  AggregateQuery q{.device_id = "dev-1", .keys = {"dbl"}, .start = kT0 + 50, .end = kT0 + 1000,
                   .interval = 100, .function = v1::AGGREGATION_FUNCTION_SUM};
  auto r = db_->Telemetry().Aggregate(kDefaultTenant, q);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(Buckets((*r)[0]), (std::vector<std::tuple<std::int64_t, double, std::int64_t>>{
                                  {50, 10, 1}, {150, 20, 1}, {350, 5, 1}}));
}

TEST_P(StorageTest, AggregateHasNoBucketCap) {
  Create("dev-1");
  constexpr int kPoints = 10000;
  std::vector<Point> points;
  for (int i = 0; i < kPoints; ++i) points.push_back(P("t", kT0 + i, i % 2 ? I(i) : D(i)));
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", points).ok());
  AggregateQuery q{.device_id = "dev-1", .keys = {"t"}, .start = kT0, .end = kT0 + kPoints, .interval = 1,
                   .function = v1::AGGREGATION_FUNCTION_MAX};
  auto r = db_->Telemetry().Aggregate(kDefaultTenant, q);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  const auto& series = (*r)[0];
  ASSERT_EQ(series.buckets_size(), kPoints);
  for (int i = 0; i < kPoints; i += 997) {
    EXPECT_EQ(series.buckets(i).ts(), kT0 + i);
    EXPECT_EQ(series.buckets(i).value(), i);
    EXPECT_EQ(series.buckets(i).count(), 1);
  }
  EXPECT_EQ(series.buckets(kPoints - 1).ts(), kT0 + kPoints - 1);
}

// ---- edge batches ---------------------------------------------------------------------------

TEST_P(StorageTest, EdgeBatchesAreStoredOnceAndAdvanceTheMark) {
  Create("known");
  auto& t = db_->Telemetry();
  const auto batch = Batch(1, 4, {R(1, "known", "t", kT0, D(1)), R(2, "new-dev", "t", kT0 + 1, I(2)),
                                  R(3, "known", "t", kT0 + 2, D(3)), R(4, "new-dev", "s", kT0 + 3, S("x"))});
  auto r = t.ApplyEdgeBatch(kDefaultTenant, "edge-1", batch, 7000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, 4u);
  EXPECT_EQ(r->high_water_mark, 4u);

  // The same batch again: acknowledged, nothing written, nothing doubled.
  r = t.ApplyEdgeBatch(kDefaultTenant, "edge-1", batch, 8000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, 0u);
  EXPECT_EQ(r->high_water_mark, 4u);
  EXPECT_EQ(QueryAll("known").size(), 2u);
  EXPECT_EQ(QueryAll("new-dev").size(), 2u);

  // Straddling the mark: only seq 5 and 7 are new (seq 6 was dropped on the edge: a gap).
  r = t.ApplyEdgeBatch(kDefaultTenant, "edge-1",
                       Batch(3, 7, {R(3, "known", "t", kT0 + 2, D(-100)), R(4, "new-dev", "s", kT0 + 3, S("y")),
                                    R(5, "known", "t", kT0 + 5, D(5)), R(7, "other-new", "t", kT0 + 7, B(true))}),
                       9000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, 2u);
  EXPECT_EQ(r->high_water_mark, 7u);
  auto known = QueryAll("known");
  ASSERT_EQ(known.size(), 3u);
  EXPECT_EQ(known[1].value().double_value(), 3);  // seq 3 was not re-applied
  auto s = QueryAll("new-dev");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].value().string_value(), "x");

  // Unknown devices were created, attached to the edge.
  auto created = db_->Devices().GetDevice(kDefaultTenant, "new-dev");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->edge_id(), "edge-1");
  EXPECT_EQ(created->name(), "new-dev");
  EXPECT_EQ(created->last_seen_at(), kT0 + 3);
  EXPECT_EQ(created->created_at(), 7000);
  auto other = db_->Devices().GetDevice(kDefaultTenant, "other-new");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->last_seen_at(), kT0 + 7);
  auto k = db_->Devices().GetDevice(kDefaultTenant, "known");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->last_seen_at(), kT0 + 5);
  EXPECT_EQ(k->name(), "name of known");  // an existing device keeps its fields

  auto latest = t.Latest(kDefaultTenant, "known", {});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ((*latest)[0].ts(), kT0 + 5);

  auto edge = db_->Edges().GetEdge(kDefaultTenant, "edge-1");
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_EQ(edge->high_water_mark(), 7u);
  EXPECT_EQ(edge->last_seen_at(), 9000);
  EXPECT_EQ(edge->created_at(), 7000);
  auto mark = db_->Edges().TouchEdge(kDefaultTenant, "edge-1", 10000);
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(mark->high_water_mark, 7u);

  // A batch wholly below the mark writes nothing and does not lower it.
  r = t.ApplyEdgeBatch(kDefaultTenant, "edge-1", Batch(1, 2, {R(1, "known", "t", kT0 + 100, D(1))}), 11000,
                       mark->epoch);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 0u);
  EXPECT_EQ(r->high_water_mark, 7u);
  EXPECT_EQ(QueryAll("known").size(), 3u);
}

TEST_P(StorageTest, EdgeBatchDuplicatesInsideOneBatchKeepTheLaterReading) {
  auto r = db_->Telemetry().ApplyEdgeBatch(
      kDefaultTenant, "edge-1",
      Batch(10, 12, {R(10, "dev", "t", kT0, D(1)), R(11, "dev", "t", kT0, D(2)), R(12, "dev", "t", kT0, I(3))}), 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->high_water_mark, 12u);
  auto rs = QueryAll("dev");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].value().int_value(), 3);
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "dev", {});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ((*latest)[0].value().int_value(), 3);
}

TEST_P(StorageTest, EdgeBatchOverwritesAStoredPointAndKeepsTheRest) {
  Create("dev");
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev", {P("t", kT0 + 1, D(1)), P("u", kT0, S("old"))}).ok());
  // seq 2 collides with a stored point; seqs 1 and 3 are new, one of them on a new device.
  auto r = db_->Telemetry().ApplyEdgeBatch(
      kDefaultTenant, "edge-1",
      Batch(1, 3, {R(1, "dev", "t", kT0, D(10)), R(2, "dev", "t", kT0 + 1, D(20)), R(3, "other", "t", kT0, I(30))}),
      1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, 3u);
  auto rs = QueryAll("dev");
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].key(), "t");
  EXPECT_EQ(rs[0].value().double_value(), 10);
  EXPECT_EQ(rs[1].value().string_value(), "old");
  EXPECT_EQ(rs[2].value().double_value(), 20) << "the edge's later write wins";
  ASSERT_EQ(QueryAll("other").size(), 1u);
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "dev", {"t"});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ((*latest)[0].value().double_value(), 20);
  auto other = db_->Devices().GetDevice(kDefaultTenant, "other");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->last_seen_at(), kT0);
}

TEST_P(StorageTest, SeveralEdgeBatchesInOneCallAreAppliedInOrder) {
  // The second batch repeats the first (a resend), the third straddles the mark and
  // overwrites a point of the first; the fourth is below the mark.
  const auto b1 = Batch(1, 3, {R(1, "d", "t", kT0, I(1)), R(2, "d", "t", kT0 + 1, I(2)), R(3, "d", "u", kT0, I(3))});
  const auto b2 = b1;
  const auto b3 = Batch(3, 5, {R(3, "d", "u", kT0, I(-3)), R(4, "d", "t", kT0 + 1, I(4)), R(5, "e", "t", kT0, I(5))});
  const auto b4 = Batch(2, 2, {R(2, "d", "t", kT0 + 9, I(-2))});
  const v1::TelemetryBatch* batches[] = {&b1, &b2, &b3, &b4};
  auto r = db_->Telemetry().ApplyEdgeBatches(kDefaultTenant, "edge-1", batches, 1, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].written, 3u);
  EXPECT_EQ((*r)[0].high_water_mark, 3u);
  EXPECT_EQ((*r)[1].written, 0u);
  EXPECT_EQ((*r)[1].high_water_mark, 3u);
  EXPECT_EQ((*r)[2].written, 2u);
  EXPECT_EQ((*r)[2].high_water_mark, 5u);
  EXPECT_EQ((*r)[3].written, 0u);
  EXPECT_EQ((*r)[3].high_water_mark, 5u);
  auto rs = QueryAll("d");
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].value().int_value(), 1);   // (t, kT0)
  EXPECT_EQ(rs[1].value().int_value(), 3);   // (u, kT0): seq 3 once, not its resend
  EXPECT_EQ(rs[2].value().int_value(), 4);   // (t, kT0 + 1): seq 4 overwrote seq 2
  EXPECT_EQ(QueryAll("e").size(), 1u);
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "d", {"t"});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ((*latest)[0].value().int_value(), 4);
  auto mark = db_->Edges().TouchEdge(kDefaultTenant, "edge-1", 2);
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(mark->high_water_mark, 5u);
}

TEST_P(StorageTest, ANewerSessionFencesOffTheOlderOne) {
  // Two sessions of one edge overlap (a gateway reconnected to another replica while its
  // old stream was still open): only the newer may write or move the mark.
  auto older = db_->Edges().TouchEdge(kDefaultTenant, "edge-f", 1);
  auto newer = db_->Edges().TouchEdge(kDefaultTenant, "edge-f", 2);
  ASSERT_TRUE(older.ok() && newer.ok());
  EXPECT_NE(older->epoch, newer->epoch);
  auto stale = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-f", Batch(1, 1000, {R(1, "f", "t", kT0, I(1))}),
                                               3, older->epoch);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  EXPECT_TRUE(QueryAll("f").empty()) << "a fenced-off session writes nothing";
  auto edge = db_->Edges().GetEdge(kDefaultTenant, "edge-f");
  ASSERT_TRUE(edge.ok());
  EXPECT_EQ(edge->high_water_mark(), 0u) << "nor moves the mark";
  auto fresh = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-f", Batch(1, 1, {R(1, "f", "t", kT0, I(2))}), 4,
                                               newer->epoch);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->written, 1u);
  EXPECT_EQ(QueryAll("f").size(), 1u);
}

TEST_P(StorageTest, RetentionDeletesWholeDaysBeforeTheCutoffAndKeepsLatestValues) {
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("r")).ok());
  // Day boundaries: kT0 - kT0 % kDay is the start of kT0's UTC day.
  const std::int64_t day0 = kT0 - kT0 % kDay;
  std::vector<Point> points;
  for (int d = 0; d < 5; ++d) points.push_back(P("t", day0 + d * kDay + 1000, I(d)));
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "r", points).ok());
  // Everything before day 3 goes: days 0, 1 and 2.
  auto result = db_->Telemetry().DropTelemetryBefore(day0 + 3 * kDay);
  ASSERT_TRUE(result.ok()) << result.status();
  // On PostgreSQL these 2023 days are outside the partition window ("now" is the real clock),
  // so their rows live in the default partition and are deleted like SQLite's; dropping
  // window partitions is PostgresOnlyTest's.
  EXPECT_EQ(result->rows_deleted, 3u);
  auto rs = QueryAll("r");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].value().int_value(), 3);
  auto latest = db_->Telemetry().Latest(kDefaultTenant, "r", {});
  ASSERT_TRUE(latest.ok());
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ((*latest)[0].value().int_value(), 4) << "latest values stay";
  // Writing into a dropped day again works (its partition is made anew), and a second pass
  // with nothing to do is fine.
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "r", {P("t", day0 + 1000, I(9))}).ok());
  EXPECT_EQ(QueryAll("r").size(), 3u);
  ASSERT_TRUE(db_->Telemetry().DropTelemetryBefore(day0).ok());
  EXPECT_EQ(QueryAll("r").size(), 3u);
}

TEST_P(StorageTest, BothBackendsTakeAndRefuseTheSameReadings) {
  // The telemetry model's edges: what one backend stores the other stores, what one refuses
  // the other refuses, with INVALID_ARGUMENT and nothing written.
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("m")).ok());
  v1::Value nul;
  nul.set_string_value(std::string("a\0b", 3));
  v1::Value bad_utf8;
  bad_utf8.set_string_value("\xff\xfe");
  v1::Value nan;
  nan.set_double_value(std::numeric_limits<double>::quiet_NaN());
  struct Case {
    Point point;
    bool stored;
  };
  const std::vector<Case> cases = {
      {P("t", 0, I(1)), true},
      {P("t", strata::telemetry::kMaxTs, I(1)), true},
      {P("t", kT0, S(std::string(strata::telemetry::kMaxStringBytes, 'x'))), true},
      {P("t", kT0, I(INT64_MIN)), true},
      {P("t", strata::telemetry::kMaxTs + 1, I(1)), false},
      {P("t", 300000000000000, I(1)), false},
      {P("t", INT64_MAX, I(1)), false},
      {P("t", -1, I(1)), false},
      {P("t", kT0, nul), false},
      {P("t", kT0, bad_utf8), false},
      {P("t", kT0, nan), false},
      {P("t", kT0, S(std::string(strata::telemetry::kMaxStringBytes + 1, 'x'))), false},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& [p, stored] = cases[i];
    auto s = db_->Telemetry().Write(kDefaultTenant, "m", {p});
    const std::uint64_t seq = i + 1;
    auto b = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-m", Batch(seq, seq, {R(seq, "m", p.key, p.ts, p.value)}),
                                             1, 0);
    if (stored) {
      EXPECT_TRUE(s.ok()) << "case " << i << ": " << s;
      EXPECT_TRUE(b.ok()) << "case " << i << ": " << b.status();
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "case " << i << ": " << s;
      EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << "case " << i << ": " << b.status();
    }
  }
  EXPECT_EQ(QueryAll("m").size(), 3u) << "ts 0, kMaxTs, and kT0 (written twice: the last write wins)";
}

TEST_P(StorageTest, AFailedEdgeBatchCallWritesNothing) {
  const auto good = Batch(1, 1, {R(1, "d", "t", kT0, I(1))});
  auto bad = Batch(2, 2, {R(2, "d", "t", kT0 + 1, I(2))});
  bad.mutable_readings(0)->clear_value();
  const v1::TelemetryBatch* batches[] = {&good, &bad};
  EXPECT_EQ(db_->Telemetry().ApplyEdgeBatches(kDefaultTenant, "edge-1", batches, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(QueryAll("d").empty());
}

TEST_P(StorageTest, EdgesKeepSeparateMarks) {
  auto a = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-a", Batch(1, 5, {R(5, "d", "t", kT0, I(1))}), 1);
  auto b = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-b", Batch(1, 2, {R(2, "d", "t", kT0 + 1, I(2))}), 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->high_water_mark, 5u);
  EXPECT_EQ(b->high_water_mark, 2u);
  EXPECT_EQ(b->written, 1u);
  EXPECT_EQ(QueryAll("d").size(), 2u);
}

// ---- quoting --------------------------------------------------------------------------------

TEST_P(StorageTest, StringsAreStoredLiterallyEverywhere) {
  int n = 0;
  for (const auto& nasty : kNastyStrings) {
    SCOPED_TRACE(nasty);
    const std::string id = nasty + "#" + std::to_string(n++);
    // A telemetry key may not hold control characters (the telemetry model); values may.
    std::string key = nasty;
    for (char& c : key) {
      if (static_cast<unsigned char>(c) < 0x20) c = '_';
    }
    v1::Device d;
    d.set_device_id(id);
    d.set_name(nasty);
    d.set_type(nasty);
    d.set_edge_id(nasty);
    (*d.mutable_labels())[nasty] = nasty;
    (*d.mutable_attributes())[nasty] = nasty;
    auto created = db_->Devices().CreateDevice(kDefaultTenant, d);
    ASSERT_TRUE(created.ok()) << created.status();
    auto got = db_->Devices().GetDevice(kDefaultTenant, id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->device_id(), id);
    EXPECT_EQ(got->name(), nasty);
    EXPECT_EQ(got->type(), nasty);
    EXPECT_EQ(got->edge_id(), nasty);
    EXPECT_THAT(got->labels(), UnorderedElementsAre(Pair(nasty, nasty)));
    EXPECT_THAT(got->attributes(), UnorderedElementsAre(Pair(nasty, nasty)));

    DeviceListQuery q;
    q.labels = {{nasty, nasty}};
    auto list = db_->Devices().ListDevices(kDefaultTenant, q);
    ASSERT_TRUE(list.ok()) << list.status();
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].device_id(), id);

    ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, id, {P(key, kT0, S(nasty)), P("plain", kT0, S(nasty))}).ok());
    TelemetryQuery tq;
    tq.device_id = id;
    tq.keys = {key};
    auto rs = db_->Telemetry().Query(kDefaultTenant, tq);
    ASSERT_TRUE(rs.ok()) << rs.status();
    ASSERT_EQ(rs->size(), 1u);
    EXPECT_EQ((*rs)[0].key(), key);
    EXPECT_EQ((*rs)[0].value().string_value(), nasty);
    tq.after = TelemetryCursor{.ts = kT0, .key = key};
    tq.keys.clear();
    rs = db_->Telemetry().Query(kDefaultTenant, tq);
    ASSERT_TRUE(rs.ok()) << rs.status();
    for (const auto& r : *rs) EXPECT_GT(r.key(), key);
    auto latest = db_->Telemetry().Latest(kDefaultTenant, id, {key});
    ASSERT_TRUE(latest.ok()) << latest.status();
    ASSERT_EQ(latest->size(), 1u);
    EXPECT_EQ((*latest)[0].value().string_value(), nasty);
    AggregateQuery aq{.device_id = id, .keys = {key, "plain"}, .start = 0, .end = kT0 + 1, .interval = 1000,
                      .function = v1::AGGREGATION_FUNCTION_COUNT};
    auto agg = db_->Telemetry().Aggregate(kDefaultTenant, aq);
    ASSERT_TRUE(agg.ok()) << agg.status();
    ASSERT_EQ(agg->size(), 2u);
    EXPECT_EQ((*agg)[0].key(), key);

    // Through the edge path too: device id, key and value.
    const std::string edge = "edge " + nasty;
    auto r = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, edge, Batch(1, 1, {R(1, id + "/e", key, kT0, S(nasty))}),
                                             1);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->written, 1u);
    auto edge_dev = db_->Devices().GetDevice(kDefaultTenant, id + "/e");
    ASSERT_TRUE(edge_dev.ok()) << edge_dev.status();
    EXPECT_EQ(edge_dev->edge_id(), edge);
    EXPECT_EQ(QueryAll(id + "/e").at(0).value().string_value(), nasty);
    auto e = db_->Edges().GetEdge(kDefaultTenant, edge);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->edge_id(), edge);

    ASSERT_TRUE(db_->Devices().DeleteDevice(kDefaultTenant, id).ok());
  }
  // And the tables are all still there.
  EXPECT_TRUE(db_->Devices().ListDevices(kDefaultTenant, DeviceListQuery{}).ok());
  EXPECT_TRUE(db_->Ping().ok());
}

TEST_P(StorageTest, EdgeSettingsRaiseTheRevisionOnlyWhenTheyChangeAndKeepAnExplicitZero) {
  v1::Edge e;
  e.set_edge_id("gw-s");
  ASSERT_TRUE(db_->Edges().CreateEdge(kDefaultTenant, e).ok());
  auto revision = [&] { return db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-s")->revision(); };
  const std::uint64_t before = revision();
  v1::EdgeSettings s;
  s.set_batch_linger_ms(0);  // set, to zero: not the same as unset
  s.set_unknown_devices("reject");
  ASSERT_TRUE(db_->Settings().SetEdgeSettings(kDefaultTenant, "gw-s", s).ok());
  EXPECT_EQ(revision(), before + 1);
  ASSERT_TRUE(db_->Settings().SetEdgeSettings(kDefaultTenant, "gw-s", s).ok());
  EXPECT_EQ(revision(), before + 1) << "the same settings again make no revision";
  auto config = db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-s");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->settings().has_batch_linger_ms());
  EXPECT_EQ(config->settings().batch_linger_ms(), 0u);
  EXPECT_FALSE(config->settings().has_batch_max());
  EXPECT_EQ(db_->Edges().GetEdge(kDefaultTenant, "gw-s")->settings().unknown_devices(), "reject");
  EXPECT_EQ(db_->Settings().SetEdgeSettings(kDefaultTenant, "nope", s).code(), absl::StatusCode::kNotFound);
  // Stored by a newer release, or damaged: read leniently.
  v1::EdgeSettings read;
  ASSERT_TRUE(strata::storage::DecodeEdgeSettings(R"({"future_field":1,"batch_max":7})", &read).ok());
  EXPECT_EQ(read.batch_max(), 7u);
  ASSERT_TRUE(strata::storage::DecodeEdgeSettings("not json", &read).ok());
  EXPECT_FALSE(read.has_batch_max());
}

// ---- commands ------------------------------------------------------------------------------

v1::Command NewCommand(const std::string& id, const std::string& device, const std::string& key = "",
                       std::int64_t expires_at = 0) {
  v1::Command c;
  c.set_command_id(id);
  c.set_device_id(device);
  c.set_name("set_speed");
  (*c.mutable_params()->mutable_fields())["rpm"].set_number_value(1200);
  (*c.mutable_params()->mutable_fields())["note"].set_string_value(kNastyStrings[0]);
  c.set_timeout_ms(30000);
  c.set_expires_at(expires_at == 0 ? strata::NowMs() + kDay : expires_at);
  c.set_idempotency_key(key);
  return c;
}

v1::CommandUpdate Update(const std::string& id, v1::CommandState state, std::int64_t at,
                         const std::string& result = "", const std::string& error = "") {
  v1::CommandUpdate u;
  u.set_command_id(id);
  u.set_state(state);
  u.set_at(at);
  u.set_result_json(result);
  u.set_error(error);
  return u;
}

class CommandStoreTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    if (HasFatalFailure()) return;
    v1::Device d = MakeDevice("dev-c");
    d.set_edge_id("gw-c");
    ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
  }
  std::vector<strata::storage::UpdateOutcome> Apply(std::vector<v1::CommandUpdate> updates,
                                                    const std::string& edge = "gw-c") {
    std::vector<const v1::CommandUpdate*> ptrs;
    for (const auto& u : updates) ptrs.push_back(&u);
    auto r = db_->Commands().ApplyCommandUpdates(kDefaultTenant, edge, ptrs);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<strata::storage::UpdateOutcome>{};
  }
  v1::Command Get(const std::string& id) {
    auto c = db_->Commands().GetCommand(kDefaultTenant, id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : v1::Command();
  }
  static std::vector<v1::CommandState> States(const v1::Command& c) {
    std::vector<v1::CommandState> out;
    for (const auto& h : c.history()) out.push_back(h.state());
    return out;
  }
};

TEST_P(CommandStoreTest, ACommandIsQueuedForTheDevicesEdgeWithItsParamsAndFirstTransition) {
  now_ = 1'800'000'000'000;
  auto created = db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c1", "dev-c"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  const v1::Command& c = created->command;
  EXPECT_EQ(c.state(), v1::COMMAND_STATE_QUEUED);
  EXPECT_EQ(c.edge_id(), "gw-c");
  EXPECT_EQ(c.created_at(), 1'800'000'000'000);
  EXPECT_EQ(c.params().fields().at("rpm").number_value(), 1200);
  EXPECT_EQ(c.params().fields().at("note").string_value(), kNastyStrings[0]);
  EXPECT_THAT(States(c), ElementsAre(v1::COMMAND_STATE_QUEUED));
  EXPECT_EQ(Get("c1").DebugString(), c.DebugString());
}

TEST_P(CommandStoreTest, RefusesUnknownDevicesAndDevicesWithoutAnEdge) {
  EXPECT_EQ(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c1", "nobody")).status().code(),
            absl::StatusCode::kNotFound);
  Create("no-edge");
  EXPECT_EQ(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c2", "no-edge")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Commands().GetCommand(kDefaultTenant, "c2").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(CommandStoreTest, AnIdempotencyKeyMakesOneCommandPerDevice) {
  auto first = db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c1", "dev-c", "key-1"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c2", "dev-c", "key-1"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->command.command_id(), "c1");
  EXPECT_EQ(db_->Commands().GetCommand(kDefaultTenant, "c2").status().code(), absl::StatusCode::kNotFound);
  // Without a key, every call is a command of its own.
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c3", "dev-c")).ok());
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c4", "dev-c")).ok());
  strata::storage::CommandListQuery q;
  q.device_id = "dev-c";
  EXPECT_EQ(db_->Commands().ListCommands(kDefaultTenant, q)->size(), 3u);
}

TEST_P(CommandStoreTest, EdgeUpdatesMoveForwardOnlyAreRecordedOnceAndFinalStatesStay) {
  now_ = 1'800'000'000'000;  // the history is in time order: the edge's times below come later
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c1", "dev-c")).ok());
  using strata::storage::UpdateOutcome;
  const std::int64_t t = now_;
  EXPECT_THAT(Apply({Update("c1", v1::COMMAND_STATE_SENT, t + 10), Update("c1", v1::COMMAND_STATE_SENT, t + 11)}),
              ElementsAre(UpdateOutcome::kRecorded, UpdateOutcome::kDuplicate));
  EXPECT_EQ(Get("c1").state(), v1::COMMAND_STATE_SENT);
  EXPECT_THAT(Apply({Update("c1", v1::COMMAND_STATE_SUCCEEDED, t + 30, R"({"ok":true,"n":[1,2]})")}),
              ElementsAre(UpdateOutcome::kRecorded));
  // A DELIVERED that arrives after the final state goes into the history only.
  EXPECT_THAT(Apply({Update("c1", v1::COMMAND_STATE_DELIVERED, t + 20)}), ElementsAre(UpdateOutcome::kRecorded));
  EXPECT_THAT(Apply({Update("c1", v1::COMMAND_STATE_FAILED, t + 40, "", "later")}), ElementsAre(UpdateOutcome::kRecorded));
  const v1::Command c = Get("c1");
  EXPECT_EQ(c.state(), v1::COMMAND_STATE_SUCCEEDED);
  EXPECT_TRUE(c.result().struct_value().fields().at("ok").bool_value());
  EXPECT_EQ(c.result().struct_value().fields().at("n").list_value().values_size(), 2);
  EXPECT_THAT(States(c), ElementsAre(v1::COMMAND_STATE_QUEUED, v1::COMMAND_STATE_SENT, v1::COMMAND_STATE_DELIVERED,
                                     v1::COMMAND_STATE_SUCCEEDED, v1::COMMAND_STATE_FAILED));
  // Another edge, an unknown command, the cloud's own state: nothing changes.
  EXPECT_THAT(Apply({Update("c1", v1::COMMAND_STATE_CANCELLED, t + 50)}, "gw-other"), ElementsAre(UpdateOutcome::kUnknown));
  EXPECT_THAT(Apply({Update("nope", v1::COMMAND_STATE_SENT, t + 50), Update("c1", v1::COMMAND_STATE_QUEUED, t + 50)}),
              ElementsAre(UpdateOutcome::kUnknown, UpdateOutcome::kUnknown));
  EXPECT_EQ(Get("c1").history_size(), 5);
}

TEST_P(CommandStoreTest, PendingForEdgeHandsOutQueuedUnexpiredCommandsAndCancellations) {
  const std::int64_t now = strata::NowMs();
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c1", "dev-c")).ok());
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c2", "dev-c", "", now + 1000)).ok());
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c3", "dev-c")).ok());
  Apply({Update("c3", v1::COMMAND_STATE_SENT, now)});
  auto pending = db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now + 2000, 100);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->commands.size(), 1u);  // c2 expired, c3 is on the edge
  EXPECT_EQ(pending->commands[0].command_id(), "c1");
  EXPECT_EQ(pending->commands[0].device_id(), "dev-c");
  auto params = nlohmann::json::parse(pending->commands[0].params_json());
  EXPECT_EQ(params["rpm"], 1200);
  EXPECT_TRUE(pending->cancels.empty());
  EXPECT_TRUE(db_->Commands().PendingForEdge(kDefaultTenant, "gw-other", now, 100)->commands.empty());

  // The sweeper ends c2; a cancelled c3 is handed out as a cancellation until the edge answers.
  auto expired = db_->Commands().ExpireCommands(now + 2000, 60000, 100);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  EXPECT_EQ(Get("c2").state(), v1::COMMAND_STATE_EXPIRED);
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 2000, 60000, 100), 0);
  ASSERT_TRUE(db_->Commands().CancelCommand(kDefaultTenant, "c3").ok());
  EXPECT_THAT(db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now, 100)->cancels, ElementsAre("c3"));
  Apply({Update("c3", v1::COMMAND_STATE_CANCELLED, now + 5)});
  EXPECT_TRUE(db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now, 100)->cancels.empty());
}

TEST_P(CommandStoreTest, TheCloudLeavesTheExpiryOfACommandAnEdgeWasHandedToThatEdgeUntilTheGrace) {
  const std::int64_t now = strata::NowMs();
  // "handed" went down a stream before its expiry; "kept" never did (its edge was away).
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("handed", "dev-c", "", now + 1000)).ok());
  ASSERT_EQ(db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now, 100)->commands.size(), 1u);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        db_->Commands().CreateCommand(kDefaultTenant, NewCommand("kept-" + std::to_string(i), "dev-c", "", now + 1000))
            .ok());
  }
  // At its expiry the edge may have delivered "handed" and not said so yet: only the others
  // end, at most `limit` a sweep.
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 2000, 60000, 3), 3);
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 2000, 60000, 3), 2);
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 2000, 60000, 3), 0);
  EXPECT_EQ(Get("handed").state(), v1::COMMAND_STATE_QUEUED);
  EXPECT_EQ(Get("kept-4").state(), v1::COMMAND_STATE_EXPIRED);
  EXPECT_THAT(States(Get("kept-4")), ElementsAre(v1::COMMAND_STATE_QUEUED, v1::COMMAND_STATE_EXPIRED));
  // The edge's word, when it comes, is the end...
  Apply({Update("handed", v1::COMMAND_STATE_SENT, now + 10), Update("handed", v1::COMMAND_STATE_DELIVERED, now + 20)});
  EXPECT_EQ(Get("handed").state(), v1::COMMAND_STATE_DELIVERED);
  // ...and an edge that never comes back leaves a command EXPIRED after the grace.
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("lost", "dev-c", "", now + 1000)).ok());
  ASSERT_EQ(db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now, 100)->commands.size(), 1u);
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 2000, 60000, 100), 0);
  EXPECT_EQ(*db_->Commands().ExpireCommands(now + 61000, 60000, 100), 1);
  EXPECT_EQ(Get("lost").state(), v1::COMMAND_STATE_EXPIRED);
  EXPECT_EQ(Get("lost").history_size(), 2);
}

TEST_P(CommandStoreTest, QueuedCommandsNoEdgeWasHandedFollowTheirDeviceToAnotherEdge) {
  const std::int64_t now = strata::NowMs();
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("handed", "dev-c")).ok());
  ASSERT_EQ(db_->Commands().PendingForEdge(kDefaultTenant, "gw-c", now, 100)->commands.size(), 1u);
  ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("waiting", "dev-c")).ok());
  v1::Device moved;
  moved.set_device_id("dev-c");
  moved.set_edge_id("gw-d");
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, moved, strata::storage::DeviceUpdate{.edge_id = true}).ok());
  EXPECT_EQ(Get("waiting").edge_id(), "gw-d");
  EXPECT_EQ(Get("handed").edge_id(), "gw-c") << "the old edge may hold it: it stays that edge's";
  auto pending = db_->Commands().PendingForEdge(kDefaultTenant, "gw-d", now, 100);
  ASSERT_EQ(pending->commands.size(), 1u);
  EXPECT_EQ(pending->commands[0].command_id(), "waiting");
}

TEST_P(CommandStoreTest, CancelEndsACommandInEveryStateBeforeTheEndAndRefusesAfterIt) {
  const std::int64_t now = now_ - 10000;  // the edge's transitions came before the cancel
  for (const char* id : {"queued", "sent", "delivered", "done"}) {
    ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand(id, "dev-c")).ok());
  }
  Apply({Update("sent", v1::COMMAND_STATE_SENT, now), Update("delivered", v1::COMMAND_STATE_DELIVERED, now),
         Update("done", v1::COMMAND_STATE_SUCCEEDED, now, "1")});
  for (const char* id : {"queued", "sent", "delivered"}) {
    auto c = db_->Commands().CancelCommand(kDefaultTenant, id);
    ASSERT_TRUE(c.ok()) << id << ": " << c.status();
    EXPECT_EQ(c->state(), v1::COMMAND_STATE_CANCELLED) << id;
    EXPECT_EQ(c->history().rbegin()->state(), v1::COMMAND_STATE_CANCELLED) << id;
  }
  auto done = db_->Commands().CancelCommand(kDefaultTenant, "done");
  EXPECT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Commands().CancelCommand(kDefaultTenant, "queued").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Commands().CancelCommand(kDefaultTenant, "nope").status().code(), absl::StatusCode::kNotFound);
  // The device's late reply stays in the history; the command stays CANCELLED.
  Apply({Update("delivered", v1::COMMAND_STATE_SUCCEEDED, now + 9, "2")});
  EXPECT_EQ(Get("delivered").state(), v1::COMMAND_STATE_CANCELLED);
  EXPECT_EQ(Get("done").result().number_value(), 1);
}

TEST_P(CommandStoreTest, ListsNewestFirstPageByPageAndByState) {
  for (int i = 0; i < 7; ++i) {
    now_ = 1'800'000'000'000 + i / 2;  // pairs share a created_at: the id breaks the tie
    ASSERT_TRUE(db_->Commands().CreateCommand(kDefaultTenant, NewCommand("c" + std::to_string(i), "dev-c")).ok());
  }
  Apply({Update("c2", v1::COMMAND_STATE_SENT, 1), Update("c5", v1::COMMAND_STATE_SENT, 1)});
  strata::storage::CommandListQuery q;
  q.device_id = "dev-c";
  q.page_size = 3;
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    auto rows = db_->Commands().ListCommands(kDefaultTenant, q);
    ASSERT_TRUE(rows.ok()) << rows.status();
    const bool more = rows->size() > 3u;
    if (more) rows->resize(3);
    for (const auto& c : *rows) seen.push_back(c.command_id());
    if (!more) break;
    q.before = strata::storage::CommandCursor{rows->back().created_at(), rows->back().command_id()};
  }
  EXPECT_THAT(seen, ElementsAre("c6", "c5", "c4", "c3", "c2", "c1", "c0"));
  q = {};
  q.device_id = "dev-c";
  q.state = v1::COMMAND_STATE_SENT;
  std::vector<std::string> sent;
  auto rows = db_->Commands().ListCommands(kDefaultTenant, q);
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const auto& c : *rows) sent.push_back(c.command_id());
  EXPECT_THAT(sent, ElementsAre("c5", "c2"));
}

std::string BackendName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }


// ---- device twins --------------------------------------------------------------------------

class TwinStoreTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    if (HasFatalFailure()) return;
    for (const char* id : {"gw-t", "gw-other"}) {
      v1::Edge e;
      e.set_edge_id(id);
      ASSERT_TRUE(db_->Edges().CreateEdge(kDefaultTenant, e).ok());
    }
    v1::Device d = MakeDevice("dev-t");
    d.set_edge_id("gw-t");
    ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
  }
  static nlohmann::json Doc(const google::protobuf::Struct& s) {
    std::string text;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(s, &text).ok());
    return nlohmann::json::parse(text);
  }
  absl::StatusOr<v1::DeviceTwin> Patch(const std::string& patch, std::optional<std::int64_t> expected = std::nullopt,
                                       const std::string& device = "dev-t") {
    return db_->Twins().UpdateDesired(kDefaultTenant, device, nlohmann::json::parse(patch), expected);
  }
  strata::storage::ReportedOutcome Report(const std::string& doc, std::uint64_t seq, const std::string& edge = "gw-t") {
    v1::TwinReported r;
    r.set_device_id("dev-t");
    r.set_reported_json(doc);
    r.set_seq(seq);
    r.set_at(report_base_ + static_cast<std::int64_t>(seq));
    auto outcome = db_->Twins().ApplyReported(kDefaultTenant, edge, r);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    return outcome.ok() ? *outcome : strata::storage::ReportedOutcome::kUnknown;
  }
  std::uint64_t Revision() { return db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-t")->revision(); }
  const std::int64_t report_base_ = strata::NowMs() - 60'000;  // the edge's clock, a minute behind
};

TEST_P(TwinStoreTest, DesiredMergesRaisesItsVersionAndTheEdgesRevisionAndTravelsInTheConfig) {
  auto twin = db_->Twins().GetTwin(kDefaultTenant, "dev-t");
  ASSERT_TRUE(twin.ok()) << twin.status();
  EXPECT_EQ(twin->desired_version(), 0);
  EXPECT_TRUE(Doc(twin->desired()).empty());
  const std::uint64_t before = Revision();
  auto t1 = Patch(R"({"rpm":1200,"mode":{"eco":true,"level":2},"note":"x"})");
  ASSERT_TRUE(t1.ok()) << t1.status();
  EXPECT_EQ(t1->desired_version(), 1);
  EXPECT_EQ(Revision(), before + 1);
  // A merge patch: null removes, objects merge, values replace.
  auto t2 = Patch(R"({"note":null,"mode":{"level":3},"rpm":900})", 1);
  ASSERT_TRUE(t2.ok()) << t2.status();
  EXPECT_EQ(t2->desired_version(), 2);
  EXPECT_EQ(Doc(t2->desired()), nlohmann::json::parse(R"({"rpm":900,"mode":{"eco":true,"level":3}})"));
  EXPECT_EQ(Revision(), before + 2);
  auto config = db_->Edges().GetEdgeConfig(kDefaultTenant, "gw-t");
  ASSERT_TRUE(config.ok());
  ASSERT_EQ(config->devices_size(), 1);
  EXPECT_EQ(config->devices(0).desired_version(), 2);
  EXPECT_EQ(nlohmann::json::parse(config->devices(0).desired_json()), Doc(t2->desired()));
  // A stale expected version changes nothing.
  auto stale = Patch(R"({"rpm":1})", 1);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  EXPECT_EQ(db_->Twins().GetTwin(kDefaultTenant, "dev-t")->desired_version(), 2);
  EXPECT_EQ(Revision(), before + 2);
  // Too large a result, and an unknown device.
  auto big = Patch(nlohmann::json{{"blob", std::string(70000, 'x')}}.dump());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument) << big.status();
  EXPECT_EQ(Patch(R"({"a":1})", std::nullopt, "nobody").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(TwinStoreTest, OfConcurrentUpdatesExpectingOneVersionExactlyOneApplies) {
  constexpr int kWriters = 8;
  std::atomic<int> applied{0}, aborted{0};
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      auto r = Patch(nlohmann::json{{"writer", i}}.dump(), 0);
      if (r.ok()) ++applied;
      if (r.status().code() == absl::StatusCode::kAborted) ++aborted;
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(applied.load(), 1);
  EXPECT_EQ(aborted.load(), kWriters - 1);
  EXPECT_EQ(db_->Twins().GetTwin(kDefaultTenant, "dev-t")->desired_version(), 1);
  // Without an expected version every writer applies, each on top of the last.
  writers.clear();
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] { EXPECT_TRUE(Patch(nlohmann::json{{"k" + std::to_string(i), i}}.dump()).ok()); });
  }
  for (auto& w : writers) w.join();
  auto twin = db_->Twins().GetTwin(kDefaultTenant, "dev-t");
  EXPECT_EQ(twin->desired_version(), 1 + kWriters);
  EXPECT_EQ(Doc(twin->desired()).size(), static_cast<std::size_t>(1 + kWriters));
}

TEST_P(TwinStoreTest, AReportOfADeviceTheCloudDoesNotKnowRegistersItForTheEdge) {
  v1::TwinReported r;
  r.set_device_id("newcomer");
  r.set_reported_json(R"({"fw":"1.2"})");
  r.set_seq(1);
  r.set_at(strata::NowMs() + 3'600'000);  // an hour ahead: stamped with the cloud's clock
  auto outcome = db_->Twins().ApplyReported(kDefaultTenant, "gw-t", r);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, strata::storage::ReportedOutcome::kStored);
  auto device = db_->Devices().GetDevice(kDefaultTenant, "newcomer");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->edge_id(), "gw-t");
  auto twin = db_->Twins().GetTwin(kDefaultTenant, "newcomer");
  EXPECT_EQ(Doc(twin->reported()), nlohmann::json::parse(R"({"fw":"1.2"})"));
  EXPECT_LE(twin->reported_updated_at(), strata::NowMs() + 1000);
}

TEST_P(TwinStoreTest, TheDesiredDocumentsOfOneEdgeAreBoundedInAll) {
  const std::string blob(62000, 'x');
  absl::Status last;
  int applied = 0;
  for (int i = 0; i < 70 && last.ok(); ++i) {
    v1::Device d = MakeDevice("big-" + std::to_string(i));
    d.set_edge_id("gw-t");
    ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, d).ok());
    last = Patch(nlohmann::json{{"blob", blob}}.dump(), std::nullopt, d.device_id()).status();
    if (last.ok()) ++applied;
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kFailedPrecondition) << last;
  EXPECT_EQ(applied, 67);  // 67 x 62,011 bytes fit in 4 MiB, 68 do not
  EXPECT_NE(std::string(last.message()).find("edge 'gw-t'"), std::string::npos) << last;
}

TEST_P(TwinStoreTest, ReportedKeepsTheHighestSeqFromTheDevicesEdgeAndShowsTheDifference) {
  ASSERT_TRUE(Patch(R"({"rpm":1200,"mode":{"eco":true,"level":2}})").ok());
  const std::uint64_t revision = Revision();
  EXPECT_EQ(Report(R"({"rpm":1000,"mode":{"eco":true,"level":1},"temp":40})", 5),
            strata::storage::ReportedOutcome::kStored);
  auto twin = db_->Twins().GetTwin(kDefaultTenant, "dev-t");
  ASSERT_TRUE(twin.ok());
  EXPECT_EQ(twin->reported_version(), 1);
  EXPECT_EQ(twin->reported_updated_at(), report_base_ + 5);
  EXPECT_EQ(Doc(twin->difference()), nlohmann::json::parse(R"({"rpm":1200,"mode":{"level":2}})"));
  EXPECT_EQ(Revision(), revision) << "reported properties make no config revision";
  // Repeated, overtaken, from another edge: nothing changes.
  EXPECT_EQ(Report(R"({"rpm":1})", 5), strata::storage::ReportedOutcome::kStale);
  EXPECT_EQ(Report(R"({"rpm":1})", 4), strata::storage::ReportedOutcome::kStale);
  EXPECT_EQ(Report(R"({"rpm":1})", 9, "gw-other"), strata::storage::ReportedOutcome::kUnknown);
  EXPECT_EQ(db_->Twins().GetTwin(kDefaultTenant, "dev-t")->reported_version(), 1);
  // Caught up: no difference.
  EXPECT_EQ(Report(R"({"rpm":1200,"mode":{"eco":true,"level":2},"temp":41})", 6),
            strata::storage::ReportedOutcome::kStored);
  twin = db_->Twins().GetTwin(kDefaultTenant, "dev-t");
  EXPECT_EQ(twin->reported_version(), 2);
  EXPECT_TRUE(Doc(twin->difference()).empty()) << Doc(twin->difference());
  // Moved to another edge: that edge's seqs count from its own start.
  v1::Device moved;
  moved.set_device_id("dev-t");
  moved.set_edge_id("gw-other");
  ASSERT_TRUE(db_->Devices().UpdateDevice(kDefaultTenant, moved, strata::storage::DeviceUpdate{.edge_id = true}).ok());
  EXPECT_EQ(Report(R"({"rpm":7})", 1, "gw-other"), strata::storage::ReportedOutcome::kStored);
  EXPECT_EQ(Doc(db_->Twins().GetTwin(kDefaultTenant, "dev-t")->reported()), nlohmann::json::parse(R"({"rpm":7})"));
}

// ---- rules and alarms -----------------------------------------------------------------------

v1::Rule NewRule(const std::string& id) {
  v1::Rule r;
  r.set_rule_id(id);
  r.set_name("overheating " + id);
  r.set_enabled(true);
  r.set_location(v1::RULE_LOCATION_CLOUD);
  r.set_alarm_type("overheat");
  auto* level = r.add_raise();
  level->set_severity(v1::ALARM_SEVERITY_MAJOR);
  level->set_condition("temperature > 85.0 && attr.zone == 'A'");
  r.set_for_ms(30000);
  return r;
}

TEST_P(StorageTest, RulesAreStoredWholeAndPagedInIdOrder) {
  now_ = 1'800'000'000'000;
  auto created = db_->Rules().CreateRule(kDefaultTenant, NewRule("r-2"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->created_at(), 1'800'000'000'000);
  EXPECT_EQ(db_->Rules().CreateRule(kDefaultTenant, NewRule("r-2")).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(db_->Rules().CreateRule(kDefaultTenant, NewRule("r-1")).ok());
  ASSERT_TRUE(db_->Rules().CreateRule("tenant-b", NewRule("r-3")).ok());
  auto got = db_->Rules().GetRule(kDefaultTenant, "r-2");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->DebugString(), created->DebugString());
  EXPECT_EQ(got->raise(0).condition(), "temperature > 85.0 && attr.zone == 'A'");
  auto page = db_->Rules().ListRules(kDefaultTenant, 1, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u) << "page_size + 1";
  EXPECT_EQ((*page)[0].rule_id(), "r-1");
  page = db_->Rules().ListRules(kDefaultTenant, 10, "r-1");
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].rule_id(), "r-2");

  now_ = 1'800'000'001'000;
  v1::Rule changed = NewRule("r-2");
  changed.set_enabled(false);
  changed.set_clear("temperature < 80.0");
  auto replaced = db_->Rules().ReplaceRule(kDefaultTenant, changed);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_FALSE(replaced->enabled());
  EXPECT_TRUE(replaced->has_enabled());
  EXPECT_EQ(replaced->clear(), "temperature < 80.0");
  EXPECT_EQ(replaced->created_at(), 1'800'000'000'000);
  EXPECT_EQ(replaced->updated_at(), 1'800'000'001'000);
  EXPECT_EQ(db_->Rules().ReplaceRule(kDefaultTenant, NewRule("nope")).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(db_->Rules().DeleteRule(kDefaultTenant, "r-2").ok());
  EXPECT_EQ(db_->Rules().DeleteRule(kDefaultTenant, "r-2").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Rules().GetRule(kDefaultTenant, "r-3").status().code(), absl::StatusCode::kNotFound)
      << "another tenant's";
}

// Alarms carry google.protobuf.Struct values: like the command and twin stores, their
// fixture stays out of the TSan pass (tools/test.sh says why).
class AlarmStoreTest : public StorageTest {
 protected:
  static AlarmRaise Raise(const std::string& device, v1::AlarmSeverity severity, std::int64_t ts, double value = 90) {
    AlarmRaise r;
    r.device_id = device;
    r.type = "overheat";
    r.severity = severity;
    r.rule_id = "r-1";
    r.ts = ts;
    r.source = "rule:r-1";
    (*r.values.mutable_fields())["temperature"].set_number_value(value);
    return r;
  }
  std::vector<std::string> Kinds(const std::string& alarm_id) {
    auto a = db_->Alarms().GetAlarm(kDefaultTenant, alarm_id);
    EXPECT_TRUE(a.ok()) << a.status();
    std::vector<std::string> out;
    if (a.ok()) {
      for (const auto& e : a->history()) out.push_back(e.kind());
    }
    return out;
  }
};

TEST_P(AlarmStoreTest, ARaiseMakesOneActiveAlarmThatOccurrencesUpdateAndEscalate) {
  now_ = 1'800'000'000'000;
  auto first = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_MAJOR, 1000));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);
  const v1::Alarm& a = first->alarm;
  EXPECT_EQ(a.status(), v1::ALARM_STATUS_ACTIVE_UNACK);
  EXPECT_EQ(a.severity(), v1::ALARM_SEVERITY_MAJOR);
  EXPECT_EQ(a.start_ts(), 1000);
  EXPECT_EQ(a.rule_id(), "r-1");
  EXPECT_EQ(a.details().fields().at("temperature").number_value(), 90);

  auto again = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_MAJOR, 2000, 91));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_FALSE(again->severity_changed);
  EXPECT_EQ(again->alarm.alarm_id(), a.alarm_id());
  EXPECT_EQ(again->alarm.start_ts(), 1000) << "an occurrence keeps the start";
  EXPECT_EQ(again->alarm.details().fields().at("temperature").number_value(), 91);
  auto worse = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_CRITICAL, 3000));
  ASSERT_TRUE(worse.ok());
  EXPECT_TRUE(worse->severity_changed);
  EXPECT_EQ(worse->alarm.severity(), v1::ALARM_SEVERITY_CRITICAL);
  // Another device or another type is another alarm.
  auto other = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m2", v1::ALARM_SEVERITY_MINOR, 1500));
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->created);
  EXPECT_NE(other->alarm.alarm_id(), a.alarm_id());
  EXPECT_THAT(Kinds(a.alarm_id()), ElementsAre("RAISED", "SEVERITY_CHANGED"));
}

TEST_P(AlarmStoreTest, AckAndClearInEitherOrderAndANewOccurrenceAfterTheClear) {
  auto raised = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_MAJOR, 1000));
  ASSERT_TRUE(raised.ok());
  const std::string id = raised->alarm.alarm_id();
  auto acked = db_->Alarms().AckAlarm(kDefaultTenant, id, 2000, "api");
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->status(), v1::ALARM_STATUS_ACTIVE_ACK);
  EXPECT_EQ(acked->ack_ts(), 2000);
  EXPECT_EQ(db_->Alarms().AckAlarm(kDefaultTenant, id, 2500, "api")->ack_ts(), 2000) << "once";
  auto cleared = db_->Alarms().ClearActiveAlarm(kDefaultTenant, "m1", "overheat", 3000, "rule:r-1");
  ASSERT_TRUE(cleared.ok()) << cleared.status();
  EXPECT_EQ(cleared->status(), v1::ALARM_STATUS_CLEARED_ACK);
  EXPECT_EQ(cleared->end_ts(), 3000);
  EXPECT_EQ(db_->Alarms().ClearActiveAlarm(kDefaultTenant, "m1", "overheat", 3100, "rule:r-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(Kinds(id), ElementsAre("RAISED", "ACKNOWLEDGED", "CLEARED"));

  auto next = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_MAJOR, 4000));
  ASSERT_TRUE(next.ok());
  EXPECT_TRUE(next->created) << "a cleared alarm is history: the next occurrence is a new alarm";
  EXPECT_NE(next->alarm.alarm_id(), id);
  // Cleared first, acknowledged after.
  auto c2 = db_->Alarms().ClearAlarm(kDefaultTenant, next->alarm.alarm_id(), 5000, "api");
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->status(), v1::ALARM_STATUS_CLEARED_UNACK);
  EXPECT_EQ(db_->Alarms().ClearAlarm(kDefaultTenant, next->alarm.alarm_id(), 6000, "api")->clear_ts(), 5000);
  EXPECT_EQ(db_->Alarms().AckAlarm(kDefaultTenant, next->alarm.alarm_id(), 7000, "api")->status(),
            v1::ALARM_STATUS_CLEARED_ACK);
  EXPECT_EQ(db_->Alarms().AckAlarm(kDefaultTenant, "nope", 1, "api").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Alarms().GetAlarm("tenant-b", id).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(AlarmStoreTest, ConcurrentRaisesGiveOneActiveAlarm) {
  // 32 raises of one (device, type) at once, from as many threads: the unique index of
  // active alarms makes them one alarm and one RAISED event, whoever wins.
  constexpr int kRaises = 32;
  std::vector<std::thread> threads;
  std::atomic<int> created{0}, failed{0};
  std::mutex mu;
  std::set<std::string> ids;
  for (int i = 0; i < kRaises; ++i) {
    threads.emplace_back([&, i] {
      auto r = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("m1", v1::ALARM_SEVERITY_MAJOR, 1000 + i));
      if (!r.ok()) {
        ++failed;
        return;
      }
      if (r->created) ++created;
      std::lock_guard lock(mu);
      ids.insert(r->alarm.alarm_id());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(created.load(), 1);
  ASSERT_EQ(ids.size(), 1u);
  AlarmListQuery q;
  q.status = v1::ALARM_STATUS_ACTIVE_UNACK;
  auto active = db_->Alarms().ListAlarms(kDefaultTenant, q);
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(active->size(), 1u);
  EXPECT_THAT(Kinds(*ids.begin()), ElementsAre("RAISED"));
}

TEST_P(AlarmStoreTest, ListFiltersAndPagesNewestFirst) {
  for (int i = 0; i < 5; ++i) {
    auto r = db_->Alarms().RaiseAlarm(kDefaultTenant, Raise("d" + std::to_string(i % 2),
                                                            i == 4 ? v1::ALARM_SEVERITY_CRITICAL : v1::ALARM_SEVERITY_MINOR,
                                                            1000 * (i + 1)));
    ASSERT_TRUE(r.ok());
    if (i < 3) {
      ASSERT_TRUE(db_->Alarms().ClearAlarm(kDefaultTenant, r->alarm.alarm_id(), 1000 * (i + 1) + 500, "api").ok());
    }
  }
  AlarmListQuery q;
  auto all = db_->Alarms().ListAlarms(kDefaultTenant, q);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].start_ts(), 5000);
  q.device_id = "d0";
  EXPECT_EQ(db_->Alarms().ListAlarms(kDefaultTenant, q)->size(), 3u);
  q = {};
  q.severity = v1::ALARM_SEVERITY_CRITICAL;
  EXPECT_EQ(db_->Alarms().ListAlarms(kDefaultTenant, q)->size(), 1u);
  q = {};
  q.status = v1::ALARM_STATUS_CLEARED_UNACK;
  EXPECT_EQ(db_->Alarms().ListAlarms(kDefaultTenant, q)->size(), 3u);
  q = {};
  q.start = 2000;
  q.end = 4000;
  EXPECT_EQ(db_->Alarms().ListAlarms(kDefaultTenant, q)->size(), 2u);
  q = {};
  q.page_size = 2;
  auto page = db_->Alarms().ListAlarms(kDefaultTenant, q);
  ASSERT_EQ(page->size(), 3u);
  q.before = AlarmCursor{(*page)[1].start_ts(), (*page)[1].alarm_id()};
  page = db_->Alarms().ListAlarms(kDefaultTenant, q);
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].start_ts(), 3000);
  q.type = "other";
  EXPECT_TRUE(db_->Alarms().ListAlarms(kDefaultTenant, q)->empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageTest, ::testing::Values("sqlite", "postgresql"), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, CommandStoreTest, ::testing::Values("sqlite", "postgresql"), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, TwinStoreTest, ::testing::Values("sqlite", "postgresql"), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, AlarmStoreTest, ::testing::Values("sqlite", "postgresql"), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, QueryTest, ::testing::Values("sqlite", "postgresql"), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, AggregateTest, ::testing::Values("sqlite", "postgresql"), BackendName);

// ---- PostgreSQL only ------------------------------------------------------------------------

class PostgresOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = strata::testing::SharedPgServer().CreateDatabase();
    db_ = Open();
    ASSERT_NE(db_, nullptr);
  }

  std::unique_ptr<Database> Open() {
    auto db = OpenDatabase(DatabaseOptions{.url = url_, .pool_size = 4, .clock = [this] { return now_.load(); }});
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? *std::move(db) : nullptr;
  }

  std::set<std::string> Partitions() {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    std::set<std::string> out;
    for (const auto& row : tx.exec("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                   " WHERE i.inhparent = 'telemetry'::regclass")) {
      out.insert(row[0].as<std::string>());
    }
    return out;
  }

  std::vector<v1::Reading> QueryAll(const std::string& device) {
    TelemetryQuery q;
    q.device_id = device;
    q.limit = 100000;
    auto r = db_->Telemetry().Query(kDefaultTenant, q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<v1::Reading>{};
  }

  std::int64_t Count(const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    return tx.exec1(sql)[0].as<std::int64_t>();
  }

  std::string url_;
  // "Now" for the stores: 2023-11-14 (kT0), so that the days the tests write around kT0 are
  // the partition window's.
  std::atomic<std::int64_t> now_{kT0};
  std::unique_ptr<Database> db_;
};

TEST_F(PostgresOnlyTest, OpenCreatesPartitionsAhead) {
  // Today and the following three days exist as soon as the database is open, besides the
  // default partition.
  const auto parts = Partitions();
  for (const char* name : {"telemetry_default", "telemetry_p20231114", "telemetry_p20231115", "telemetry_p20231116",
                           "telemetry_p20231117"}) {
    EXPECT_TRUE(parts.contains(name)) << name;
  }
  EXPECT_EQ(parts.size(), 5u);
}

TEST_F(PostgresOnlyTest, WritesCreateDailyPartitionsInTheWindowAndUseTheDefaultOutsideIt) {
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("dev-1")).ok());
  const auto before = Partitions();
  // 2023-11-07 (a week back: the window's first day), 2023-11-14 .. 2023-11-18 (the window
  // ends on the 17th), 2023-11-06 (a day before the window) and a day in 1970.
  std::vector<Point> points;
  for (int day = 0; day < 5; ++day) points.push_back(P("t", kT0 + day * kDay, I(day)));
  points.push_back(P("t", kT0 - 7 * kDay, I(-7)));
  points.push_back(P("t", kT0 - 8 * kDay, I(-8)));
  points.push_back(P("t", 5, I(-1)));
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", points).ok());
  const auto after = Partitions();
  EXPECT_EQ(after.size(), before.size() + 1) << "only 2023-11-07 was new; the 14th..17th existed";
  EXPECT_TRUE(after.contains("telemetry_p20231107"));
  EXPECT_FALSE(after.contains("telemetry_p20231118"));
  EXPECT_FALSE(after.contains("telemetry_p20231106"));
  EXPECT_FALSE(after.contains("telemetry_p19700101"));
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_p20231116"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_default"), 3) << "the 18th, the 6th and 1970";
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry"), 8);
  EXPECT_EQ(QueryAll("dev-1").size(), 8u);

  // Another process that opens the database later learns which partitions exist.
  auto second = Open();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0 + kDay, I(42))}).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry"), 8);

  // Timestamps the day partitions cannot name are refused, not mis-stored.
  EXPECT_EQ(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", std::numeric_limits<std::int64_t>::max(), I(1))}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresOnlyTest, NoWriteMakesMorePartitionsThanTheWindowHolds) {
  // An edge batch of readings a year apart (a device with a broken clock, a replayed
  // archive): all stored, queryable, and the partition count grows by the window at most.
  ASSERT_TRUE(db_->Edges().CreateEdge(kDefaultTenant, [] { v1::Edge e; e.set_edge_id("gw-y"); return e; }()).ok());
  auto session = db_->Edges().TouchEdge(kDefaultTenant, "gw-y", kT0);
  ASSERT_TRUE(session.ok());
  const auto before = Partitions().size();
  std::vector<v1::EdgeReading> readings;
  constexpr int kYears = 500;
  for (int i = 0; i < kYears; ++i) readings.push_back(R(i + 1, "spread", "t", 5 + i * 365 * kDay, I(i)));
  for (int i = 0; i < 11; ++i) readings.push_back(R(kYears + i + 1, "spread", "t", kT0 + (i - 7) * kDay, I(i)));
  auto r = db_->Telemetry().ApplyEdgeBatch(kDefaultTenant, "gw-y", Batch(1, readings.size(), readings), kT0,
                                           session->epoch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, readings.size());
  EXPECT_LE(Partitions().size(), before + 7) << "the window's days before today; today and after exist";
  EXPECT_EQ(QueryAll("spread").size(), readings.size());
}

TEST_F(PostgresOnlyTest, ADaysPartitionMadeLaterTakesItsRowsOutOfTheDefault) {
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("late")).ok());
  // Five days ahead is outside the window today: the reading goes to the default partition.
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "late", {P("t", kT0 + 5 * kDay, I(5))}).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_default"), 1);
  EXPECT_FALSE(Partitions().contains("telemetry_p20231119"));
  // Three days later the day is in the window: opening makes its partition, with the row.
  db_.reset();
  now_ = kT0 + 3 * kDay;
  db_ = Open();
  ASSERT_NE(db_, nullptr);
  EXPECT_TRUE(Partitions().contains("telemetry_p20231119"));
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_default"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_p20231119"), 1);
  auto rows = QueryAll("late");
  ASSERT_EQ(rows.size(), 1u) << "moved, not copied";
  EXPECT_EQ(rows[0].value().int_value(), 5);
  // Writing that day again replaces the value (one value per key and ts), in its partition.
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "late", {P("t", kT0 + 5 * kDay, I(6))}).ok());
  EXPECT_EQ(QueryAll("late").at(0).value().int_value(), 6);
}

TEST_F(PostgresOnlyTest, ConcurrentWritersMoveADayOutOfTheDefaultOnce) {
  // Two Database objects stand for two replicas; the day's rows wait in the default.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("race")).ok());
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "race", {P("t", kT0 + 5 * kDay, I(0))}).ok());
  now_ = kT0 + 3 * kDay;  // the day enters both replicas' window
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Database& db = t % 2 ? *other : *db_;
      auto s = db.Telemetry().Write(kDefaultTenant, "race", {P("k" + std::to_string(t), kT0 + 5 * kDay + t, I(t))});
      if (!s.ok()) {
        ADD_FAILURE() << "writer " << t << ": " << s;
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(Partitions().contains("telemetry_p20231119"));
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_default"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry_p20231119"), 9);
}

TEST_F(PostgresOnlyTest, RetentionDropsWindowPartitionsAndDeletesOldRowsOfTheDefault) {
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("old")).ok());
  const std::int64_t day0 = kT0 - kT0 % kDay;
  // Days -3..-1 have partitions (window), 1970 and day -30 live in the default.
  std::vector<Point> points = {P("t", 5, I(0)), P("t", day0 - 30 * kDay, I(1))};
  for (int d = 1; d <= 3; ++d) points.push_back(P("t", day0 - d * kDay + 1, I(10 + d)));
  points.push_back(P("t", day0 + 1, I(99)));
  ASSERT_TRUE(db_->Telemetry().Write(kDefaultTenant, "old", points).ok());
  auto result = db_->Telemetry().DropTelemetryBefore(day0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->partitions_dropped, 3u);
  EXPECT_EQ(result->rows_deleted, 2u) << "the default partition's old rows";
  auto rows = QueryAll("old");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].value().int_value(), 99);
}

TEST_F(PostgresOnlyTest, ConcurrentWritesIntoNewDaysDoNotFail) {
  // Two Database objects stand for two processes: neither knows what the other created.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  constexpr int kThreads = 8;
  constexpr int kDays = 6;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("dev-" + std::to_string(t))).ok());
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const std::int64_t base = kT0 - 6 * kDay;  // days the window holds, not made yet
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Database& db = t % 2 ? *other : *db_;
      for (int day = 0; day < kDays; ++day) {
        std::vector<Point> points = {P("t", base + day * kDay + t, I(t)), P("u", base + day * kDay, D(t))};
        auto s = db.Telemetry().Write(kDefaultTenant, "dev-" + std::to_string(t), points);
        if (!s.ok()) {
          ADD_FAILURE() << "thread " << t << " day " << day << ": " << s;
          ++failures;
        }
      }
      auto r = db.Telemetry().ApplyEdgeBatch(kDefaultTenant, "edge-" + std::to_string(t),
                                             Batch(1, 1, {R(1, "shared", "t", base + 20 * kDay, I(t))}), 1);
      if (!r.ok()) {
        ADD_FAILURE() << "thread " << t << " edge batch: " << r.status();
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry WHERE device_id LIKE 'dev-%'"), kThreads * kDays * 2);
  EXPECT_EQ(Count("SELECT count(*) FROM telemetry WHERE device_id = 'shared'"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM devices WHERE device_id = 'shared'"), 1);
}

TEST_F(PostgresOnlyTest, ConcurrentOpensMigrateOnce) {
  const std::string fresh = strata::testing::SharedPgServer().CreateDatabase();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto db = OpenDatabase(DatabaseOptions{.url = fresh, .pool_size = 2});
      if (db.ok()) ++ok;
      else ADD_FAILURE() << db.status();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 4);
  pqxx::connection c(fresh);
  pqxx::nontransaction tx(c);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM schema_migrations")[0].as<std::size_t>(), strata::storage::PostgresMigrations().size())
      << "each migration once";
}

TEST_F(PostgresOnlyTest, PoolReconnectsAfterTheServerDropsConnections) {
  ASSERT_TRUE(db_->Devices().CreateDevice(kDefaultTenant, MakeDevice("dev-1")).ok());
  {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    auto r = tx.exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    ASSERT_GE(r[0][0].as<int>(), 1);
  }
  auto got = db_->Devices().GetDevice(kDefaultTenant, "dev-1");
  EXPECT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(db_->Ping().ok());
  EXPECT_TRUE(db_->Telemetry().Write(kDefaultTenant, "dev-1", {P("t", kT0, I(1))}).ok());
}

}  // namespace
