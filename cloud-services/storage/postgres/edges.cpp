// PostgreSQL: the edge store.
#include <string>
#include <vector>

#include "postgres/backend.h"
#include "rows.h"
#include "sql.h"

namespace strata::storage::postgres {
namespace {

const std::string kInsertEdge = sql::ForPostgres(sql::kInsertEdge);
const std::string kSelectEdge = sql::ForPostgres(sql::kSelectEdge);
const std::string kListEdges = sql::ForPostgres(sql::kListEdges);
const std::string kTouchEdge = sql::ForPostgres(sql::kTouchEdge);
const std::string kSelectEdgeConfig = sql::ForPostgres(sql::kSelectEdgeConfig);
const std::string kSelectConfigState = sql::ForPostgres(sql::kSelectConfigState);
const std::string kConfigApplied = sql::ForPostgres(sql::kConfigApplied);
const std::string kConfigRefused = sql::ForPostgres(sql::kConfigRefused);
const std::string kEdgeHeartbeat = sql::ForPostgres(sql::kEdgeHeartbeat);
const std::string kEdgeSessionEnded = sql::ForPostgres(sql::kEdgeSessionEnded);

class Edges final : public EdgeStore {
 public:
  explicit Edges(Context& ctx) : ctx_(ctx) {}

  absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) override {
    if (auto s = CheckId("edge_id", edge.edge_id()); !s.ok()) return s;
    const std::string labels = EncodeStringMap(edge.labels());
    return NameConflict<v1::Edge>(ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Edge> {
      const std::int64_t now = ctx_.Now();
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(kInsertEdge, Str(tenant), edge.edge_id(), edge.name(), labels, now);
      return CreatedEdge(edge, tenant, now);
    }), "edge '" + edge.edge_id() + "'");
  }

  absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Edge> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kSelectEdge, Str(tenant), Str(edge_id));
      if (r.empty()) return NotFound("edge", Str(edge_id));
      return EdgeFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                  std::string_view after_edge_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Edge>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kListEdges, Str(tenant), Str(after_edge_id), PageLimit(page_size));
      std::vector<v1::Edge> out;
      for (const auto& row : r) {
        auto e = EdgeFromRow(PgRow{row}, tenant);
        if (!e.ok()) return e.status();
        out.push_back(*std::move(e));
      }
      return out;
    });
  }

  absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                        std::int64_t now_ms) override {
    if (auto s = CheckId("edge_id", edge_id); !s.ok()) return s;
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<EdgeSession> {
      pqxx::nontransaction tx(lease.conn());
      auto row = tx.exec_params1(kTouchEdge, Str(tenant), Str(edge_id), now_ms);
      return EdgeSession{static_cast<std::uint64_t>(row[0].as<std::int64_t>()),
                         static_cast<std::uint64_t>(row[1].as<std::int64_t>()),
                         static_cast<std::uint64_t>(row[2].as<std::int64_t>())};
    });
  }

  absl::StatusOr<v1::EdgeConfig> GetEdgeConfig(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::EdgeConfig> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kSelectEdgeConfig, Str(tenant), Str(edge_id));
      if (r.empty()) return NotFound("edge", Str(edge_id));
      v1::EdgeConfig config;
      for (const auto& row : r) {
        if (auto s = AddEdgeConfigRow(PgRow{row}, config); !s.ok()) return s;
      }
      return config;
    });
  }

  absl::StatusOr<ConfigState> GetConfigState(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<ConfigState> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kSelectConfigState, Str(tenant), Str(edge_id));
      if (r.empty()) return NotFound("edge", Str(edge_id));
      return ConfigState{static_cast<std::uint64_t>(r[0][0].as<std::int64_t>()),
                         static_cast<std::uint64_t>(r[0][1].as<std::int64_t>())};
    });
  }

  absl::Status RecordConfigAck(std::string_view tenant, std::string_view edge_id, const v1::ConfigAck& ack,
                               std::int64_t now_ms) override {
    if (auto s = CheckConfigAck(ack); !s.ok()) return s;
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::nontransaction tx(lease.conn());
      if (ack.applied()) {
        tx.exec_params(kConfigApplied, Str(tenant), Str(edge_id), static_cast<std::int64_t>(ack.revision()), now_ms);
      } else {
        tx.exec_params(kConfigRefused, Str(tenant), Str(edge_id), ConfigRefusal(ack),
                       static_cast<std::int64_t>(ack.revision()));
      }
      return absl::OkStatus();
    });
  }

  absl::Status RecordHeartbeat(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch,
                               std::int64_t now_ms, const v1::Heartbeat& heartbeat) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(kEdgeHeartbeat, Str(tenant), Str(edge_id), static_cast<std::int64_t>(epoch), now_ms,
                     ClampToInt64(heartbeat.pending_readings()), heartbeat.oldest_pending_age_ms());
      return absl::OkStatus();
    });
  }

  absl::Status EndSession(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(kEdgeSessionEnded, Str(tenant), Str(edge_id), static_cast<std::int64_t>(epoch));
      return absl::OkStatus();
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<EdgeStore> NewEdgeStore(Context& ctx) { return std::make_unique<Edges>(ctx); }

}  // namespace strata::storage::postgres
