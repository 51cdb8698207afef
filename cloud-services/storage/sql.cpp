#include "storage/sql.h"

#include <cctype>

namespace strata::storage::sql {

std::string ForPostgres(std::string_view statement) {
  std::string out(statement);
  for (std::size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '?' && std::isdigit(static_cast<unsigned char>(out[i + 1]))) out[i] = '$';
  }
  return out;
}

}  // namespace strata::storage::sql
