// PostgreSQL: the device store.
#include <optional>
#include <string>
#include <vector>

#include "postgres/backend.h"
#include "rows.h"
#include "sql.h"

namespace strata::storage::postgres {
namespace {

const std::string kInsertDevice = sql::ForPostgres(sql::kInsertDevice);
const std::string kSelectDevice = sql::ForPostgres(sql::kSelectDevice);
const std::string kUpdateDevice = sql::ForPostgres(sql::kUpdateDevice);
const std::string kDeleteDevice = sql::ForPostgres(sql::kDeleteDevice);
const std::string kDeleteDeviceTelemetry = sql::ForPostgres(sql::kDeleteDeviceTelemetry);
const std::string kDeleteDeviceLatest = sql::ForPostgres(sql::kDeleteDeviceLatest);
// $3: a JSON object of labels that must all be present, or NULL for no filter.
constexpr std::string_view kListDevices =
    "SELECT device_id, name, type, labels::text, attributes::text, edge_id, created_at, updated_at,"
    " last_seen_at FROM devices"
    " WHERE tenant_id = $1 AND device_id > $2 AND ($3::jsonb IS NULL OR labels @> $3::jsonb)"
    " ORDER BY device_id LIMIT $4";

class Devices final : public DeviceStore {
 public:
  explicit Devices(Context& ctx) : ctx_(ctx) {}

  absl::StatusOr<v1::Device> CreateDevice(std::string_view tenant, const v1::Device& device) override {
    if (auto s = CheckId("device_id", device.device_id()); !s.ok()) return s;
    const std::string labels = EncodeStringMap(device.labels());
    const std::string attributes = EncodeStringMap(device.attributes());
    return NameConflict<v1::Device>(ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      const std::int64_t now = ctx_.Now();
      pqxx::nontransaction tx(lease.conn());
      tx.exec_params(kInsertDevice, Str(tenant), device.device_id(), device.name(), device.type(), labels,
                     attributes, device.edge_id(), now);
      return CreatedDevice(device, tenant, now);
    }), "device '" + device.device_id() + "'");
  }

  absl::StatusOr<v1::Device> GetDevice(std::string_view tenant, std::string_view device_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kSelectDevice, Str(tenant), Str(device_id));
      if (r.empty()) return NotFound("device", Str(device_id));
      return DeviceFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::StatusOr<std::vector<v1::Device>> ListDevices(std::string_view tenant,
                                                      const DeviceListQuery& query) override {
    std::optional<std::string> filter;
    if (!query.labels.empty()) {
      filter = LabelFilterJson(query.labels);
      if (!filter) return std::vector<v1::Device>{};
    }
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<std::vector<v1::Device>> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(Str(kListDevices), Str(tenant), query.after_device_id, NullableParam(filter),
                              PageLimit(query.page_size));
      std::vector<v1::Device> out;
      for (const auto& row : r) {
        auto d = DeviceFromRow(PgRow{row}, tenant);
        if (!d.ok()) return d.status();
        out.push_back(*std::move(d));
      }
      return out;
    });
  }

  absl::StatusOr<v1::Device> UpdateDevice(std::string_view tenant, const v1::Device& device,
                                          const DeviceUpdate& fields) override {
    const std::string labels = EncodeStringMap(device.labels());
    const std::string attributes = EncodeStringMap(device.attributes());
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::StatusOr<v1::Device> {
      pqxx::nontransaction tx(lease.conn());
      auto r = tx.exec_params(kUpdateDevice, Str(tenant), device.device_id(), fields.name, device.name(),
                              fields.type, device.type(), fields.labels, labels, fields.attributes, attributes,
                              ctx_.Now(), fields.edge_id, device.edge_id());
      if (r.empty()) return NotFound("device", device.device_id());
      return DeviceFromRow(PgRow{r[0]}, tenant);
    });
  }

  absl::Status DeleteDevice(std::string_view tenant, std::string_view device_id) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::work tx(lease.conn());
      if (tx.exec_params(kDeleteDevice, Str(tenant), Str(device_id)).affected_rows() == 0) {
        return NotFound("device", Str(device_id));
      }
      tx.exec_params(kDeleteDeviceTelemetry, Str(tenant), Str(device_id));
      tx.exec_params(kDeleteDeviceLatest, Str(tenant), Str(device_id));
      tx.commit();
      return absl::OkStatus();
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<DeviceStore> NewDeviceStore(Context& ctx) { return std::make_unique<Devices>(ctx); }

}  // namespace strata::storage::postgres
