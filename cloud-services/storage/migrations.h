// Schema migrations of the storage backends, embedded at build time from
// migrations/<backend>/NNNN_name.sql (see embed_migrations.cmake). Each backend applies the
// versions it has not recorded in schema_migrations, in order, one transaction each.
#pragma once

#include <span>
#include <string_view>

#include <strata/migration.h>

namespace strata::storage {

using strata::Migration;

// Sorted by version, ascending.
std::span<const Migration> PostgresMigrations();
std::span<const Migration> SqliteMigrations();

}  // namespace strata::storage
