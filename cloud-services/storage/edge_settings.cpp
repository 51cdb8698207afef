// The store of edges' managed settings, written once for both backends on storage/sql_tx.h.
// The settings are a column of edge_config (migrations/*/00{09,10}_edge_settings.sql) and
// travel in the edge's config revision, so a change raises it in the same statement.
#include <string>

#include <google/protobuf/util/json_util.h>

#include "storage/codec.h"
#include "storage/sql_tx.h"
#include "storage/store.h"

namespace strata::storage {
namespace {

// Only when they change: a PUT repeated by a retry or a reconciling loop makes no revision.
constexpr std::string_view kUpdateSettings =
    "UPDATE edge_config SET settings = ?3, config_revision = config_revision + 1"
    " WHERE tenant_id = ?1 AND edge_id = ?2 AND settings <> ?3";
constexpr std::string_view kEdgeExists = "SELECT 1 FROM edge_config WHERE tenant_id = ?1 AND edge_id = ?2";

class EdgeSettingsStoreImpl final : public EdgeSettingsStore {
 public:
  explicit EdgeSettingsStoreImpl(SqlRunner& db) : db_(db) {}

  absl::Status SetEdgeSettings(std::string_view tenant, std::string_view edge_id,
                               const v1::EdgeSettings& settings) override {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(settings, &json, options).ok()) {
      return absl::InvalidArgumentError("settings do not convert to JSON");
    }
    return db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      auto changed = tx.Exec(kUpdateSettings, {std::string(tenant), std::string(edge_id), json});
      if (!changed.ok()) return changed.status();
      if (*changed == 1) return absl::OkStatus();
      bool found = false;
      auto s = tx.Query(kEdgeExists, {std::string(tenant), std::string(edge_id)}, [&](const SqlRow&) {
        found = true;
        return absl::OkStatus();
      });
      if (!s.ok()) return s;
      return found ? absl::OkStatus() : NotFound("edge", edge_id);
    });
  }

 private:
  SqlRunner& db_;
};

}  // namespace

std::unique_ptr<EdgeSettingsStore> NewEdgeSettingsStore(SqlRunner& runner) {
  return std::make_unique<EdgeSettingsStoreImpl>(runner);
}

}  // namespace strata::storage
