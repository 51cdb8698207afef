#include "storage/rows.h"

namespace strata::storage {

v1::Device CreatedDevice(const v1::Device& input, std::string_view tenant, std::int64_t now_ms) {
  v1::Device out = input;
  out.set_tenant_id(std::string(tenant));
  out.set_created_at(now_ms);
  out.set_updated_at(now_ms);
  out.set_last_seen_at(0);
  return out;
}

v1::Edge CreatedEdge(const v1::Edge& input, std::string_view tenant, std::int64_t now_ms) {
  v1::Edge out = input;
  out.set_tenant_id(std::string(tenant));
  out.set_created_at(now_ms);
  out.set_updated_at(now_ms);
  out.set_last_seen_at(0);
  out.set_high_water_mark(0);
  out.clear_settings();  // output only here: set with UpdateEdgeSettings
  return out;
}

std::int64_t PageLimit(int page_size) { return static_cast<std::int64_t>(page_size > 0 ? page_size : 100) + 1; }

}  // namespace strata::storage
