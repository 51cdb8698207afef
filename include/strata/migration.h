// One versioned schema migration, as a backend ships it (the cloud's PostgreSQL and SQLite
// backends, the edge buffer): applied once, in version order, recorded in schema_migrations.
#pragma once

#include <string_view>

namespace strata {

struct Migration {
  int version;  // 1, 2, ...: strictly increasing, never reused
  std::string_view name;
  std::string_view sql;  // one or more statements
};

}  // namespace strata
