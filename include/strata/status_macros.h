// Early return on an error status, for code that calls several fallible steps in a row
// (Abseil keeps its own versions of these internal).
//
//   STRATA_RETURN_IF_ERROR(stmt.Run());
//   STRATA_ASSIGN_OR_RETURN(auto stmt, db.Prepare(kSql));
#pragma once

#include <utility>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#define STRATA_STATUS_CONCAT_INNER(a, b) a##b
#define STRATA_STATUS_CONCAT(a, b) STRATA_STATUS_CONCAT_INNER(a, b)

// Returns the status of `expr` (an absl::Status) from the enclosing function when it is not OK.
#define STRATA_RETURN_IF_ERROR(expr)                                       \
  do {                                                                     \
    if (absl::Status strata_status_ = (expr); !strata_status_.ok()) {      \
      return strata_status_;                                               \
    }                                                                      \
  } while (false)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status when it is not OK, otherwise
// declares or assigns `lhs` from its value.
#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL(STRATA_STATUS_CONCAT(strata_statusor_, __LINE__), lhs, expr)

#define STRATA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = *std::move(tmp)
