// SQLite: the device store.
#include <optional>
#include <string>
#include <vector>

#include "rows.h"
#include "sql.h"
#include "sqlite/backend.h"

namespace strata::storage::sqlitedb {
namespace {

// ?3: a JSON object of labels that must all be present, or NULL for no filter.
constexpr std::string_view kListDevices =
    "SELECT device_id, name, type, labels, attributes, edge_id, created_at, updated_at, last_seen_at"
    " FROM devices WHERE tenant_id = ?1 AND device_id > ?2"
    " AND (?3 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?3) AS f WHERE NOT EXISTS"
    "   (SELECT 1 FROM json_each(devices.labels) AS l WHERE l.key = f.key AND l.value = f.value)))"
    " ORDER BY device_id LIMIT ?4";

class Devices final : public DeviceStore {
 public:
  explicit Devices(Context& ctx) : ctx_(ctx) {}

  absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) override {
    if (auto s = CheckId("device_id", device.device_id()); !s.ok()) return s;
    return NameConflict<v1::Device>(ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::Device> {
      const std::int64_t now = ctx_.Now();
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kInsertDevice, tenant, device.device_id(), device.name(), device.type(),
                                  EncodeStringMap(device.labels()), EncodeStringMap(device.attributes()),
                                  device.edge_id(), now));
      return CreatedDevice(device, tenant, now);
    }), "device '" + device.device_id() + "'");
  }

  absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::Device> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kSelectDevice));
      STRATA_ASSIGN_OR_RETURN(bool found, s.Bind(1, tenant).Bind(2, device_id).Step());
      if (!found) return NotFound("device", Str(device_id));
      return DeviceFromRow(SqliteRow{s}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Device>> ListDevices(std::string_view tenant,
                                                      const DeviceListQuery& query) override {
    std::optional<std::string> filter;
    if (!query.labels.empty()) {
      filter = LabelFilterJson(query.labels);
      if (!filter) return std::vector<v1::Device>{};
    }
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<std::vector<v1::Device>> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(kListDevices));
      s.Bind(1, tenant).Bind(2, query.after_device_id).Bind(3, filter).Bind(4, PageLimit(query.page_size));
      std::vector<v1::Device> out;
      STRATA_RETURN_IF_ERROR(s.ForEachRow([&]() -> absl::Status {
        STRATA_ASSIGN_OR_RETURN(auto d, DeviceFromRow(SqliteRow{s}, tenant));
        out.push_back(std::move(d));
        return absl::OkStatus();
      }));
      return out;
    });
  }

  absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                          const DeviceUpdate& fields) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::StatusOr<v1::Device> {
      STRATA_ASSIGN_OR_RETURN(auto s, db.Prepare(sql::kUpdateDevice));
      s.Bind(1, tenant).Bind(2, device.device_id())
          .Bind(3, fields.name).Bind(4, device.name())
          .Bind(5, fields.type).Bind(6, device.type())
          .Bind(7, fields.labels).Bind(8, EncodeStringMap(device.labels()))
          .Bind(9, fields.attributes).Bind(10, EncodeStringMap(device.attributes()))
          .Bind(11, ctx_.Now())
          .Bind(12, fields.edge_id).Bind(13, device.edge_id());
      STRATA_ASSIGN_OR_RETURN(bool found, s.Step());
      if (!found) return NotFound("device", device.device_id());
      auto out = DeviceFromRow(SqliteRow{s}, tenant);
      STRATA_RETURN_IF_ERROR(s.Run());
      return out;
    });
  }

  absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kDeleteDevice, tenant, device_id));
      if (db.Changes() == 0) return NotFound("device", Str(device_id));
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kDeleteDeviceTelemetry, tenant, device_id));
      STRATA_RETURN_IF_ERROR(Exec(db, sql::kDeleteDeviceLatest, tenant, device_id));
      return tx.Commit();
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<DeviceStore> NewDeviceStore(Context& ctx) { return std::make_unique<Devices>(ctx); }

}  // namespace strata::storage::sqlitedb
