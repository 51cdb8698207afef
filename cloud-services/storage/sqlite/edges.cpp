// SQLite: the edge store.
#include <string>
#include <vector>

#include "rows.h"
#include "sql.h"
#include "sqlite/backend.h"

namespace strata::storage::sqlitedb {
namespace {

class Edges final : public EdgeStore {
 public:
  explicit Edges(Context& ctx) : ctx_(ctx) {}

  absl::StatusOr<v1::Edge> CreateEdge(std::string_view tenant, const v1::Edge& edge) override {
    if (auto s = CheckId("edge_id", edge.edge_id()); !s.ok()) return s;
    return NameConflict<v1::Edge>(ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::Edge> {
      const std::int64_t now = ctx_.Now();
      STRATA_RETURN_IF_ERROR(
          Exec(db, sql::kInsertEdge, tenant, edge.edge_id(), edge.name(), EncodeStringMap(edge.labels()), now));
      return CreatedEdge(edge, tenant, now);
    }), "edge '" + edge.edge_id() + "'");
  }

  absl::StatusOr<v1::Edge> GetEdge(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::Edge> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kSelectEdge));
      STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, tenant).Bind(2, edge_id).Step());
      if (!found) return NotFound("edge", Str(edge_id));
      return EdgeFromRow(SqliteRow{s}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Edge>> ListEdges(std::string_view tenant, int page_size,
                                                  std::string_view after_edge_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<v1::Edge>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kListEdges));
      s.Bind(1, tenant).Bind(2, after_edge_id).Bind(3, PageLimit(page_size));
      std::vector<v1::Edge> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&]() -> absl::Status {
        STRATA_ASSIGN_OR_RETURN(auto e, EdgeFromRow(SqliteRow{s}, tenant));
        out.push_back(std::move(e));
        return absl::OkStatus();
      }));
      return out;
    });
  }

  absl::StatusOr<EdgeSession> TouchEdge(std::string_view tenant, std::string_view edge_id,
                                        std::int64_t now_ms) override {
    if (auto s = CheckId("edge_id", edge_id); !s.ok()) return s;
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<EdgeSession> {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kTouchEdge));
      STRATA_ASSIGN_OR_RETURN(bool row, s.Bind(1, tenant).Bind(2, edge_id).Bind(3, now_ms).Step());
      if (!row) return absl::InternalError("TouchEdge returned no row");
      EdgeSession session{static_cast<std::uint64_t>(s.Int(0)), static_cast<std::uint64_t>(s.Int(1)),
                          static_cast<std::uint64_t>(s.Int(2))};
      STRATA_RETURN_IF_ERROR(s.Run());
      STRATA_RETURN_IF_ERROR(tx.Commit());
      return session;
    });
  }

  absl::StatusOr<v1::EdgeConfig> GetEdgeConfig(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::EdgeConfig> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kSelectEdgeConfig));
      s.Bind(1, tenant).Bind(2, edge_id);
      v1::EdgeConfig config;
      bool found = false;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&]() -> absl::Status {
        found = true;
        return AddEdgeConfigRow(SqliteRow{s}, config);
      }));
      if (!found) return NotFound("edge", Str(edge_id));
      return config;
    });
  }

  absl::StatusOr<ConfigState> GetConfigState(std::string_view tenant, std::string_view edge_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<ConfigState> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kSelectConfigState));
      STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, tenant).Bind(2, edge_id).Step());
      if (!found) return NotFound("edge", Str(edge_id));
      return ConfigState{static_cast<std::uint64_t>(s.Int(0)), static_cast<std::uint64_t>(s.Int(1))};
    });
  }

  absl::Status RecordConfigAck(std::string_view tenant, std::string_view edge_id, const v1::ConfigAck& ack,
                               std::int64_t now_ms) override {
    if (auto s = CheckConfigAck(ack); !s.ok()) return s;
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      if (ack.applied()) {
        return Exec(db, sql::kConfigApplied, tenant, edge_id, static_cast<std::int64_t>(ack.revision()), now_ms);
      }
      return Exec(db, sql::kConfigRefused, tenant, edge_id, ConfigRefusal(ack),
                  static_cast<std::int64_t>(ack.revision()));
    });
  }

  absl::Status RecordHeartbeat(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch,
                               std::int64_t now_ms, const v1::Heartbeat& heartbeat) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      return Exec(db, sql::kEdgeHeartbeat, tenant, edge_id, static_cast<std::int64_t>(epoch), now_ms,
                  ClampToInt64(heartbeat.pending_readings()), heartbeat.oldest_pending_age_ms());
    });
  }

  absl::Status EndSession(std::string_view tenant, std::string_view edge_id, std::uint64_t epoch) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      return Exec(db, sql::kEdgeSessionEnded, tenant, edge_id, static_cast<std::int64_t>(epoch));
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<EdgeStore> NewEdgeStore(Context& ctx) { return std::make_unique<Edges>(ctx); }

}  // namespace strata::storage::sqlitedb
