// PostgreSQL: the backend-neutral transaction (storage/sql_tx.h) on a pooled connection, in
// one pqxx::work; Context::Run retries it on a lost connection or a deadlock.
#include <optional>
#include <vector>

#include "postgres/backend.h"
#include "storage/sql.h"
#include "storage/sql_tx.h"

namespace strata::storage::postgres {
namespace {

struct Row final : SqlRow {
  explicit Row(const pqxx::row& r) : r(r) {}
  bool IsNull(int i) const override { return r[i].is_null(); }
  std::string Text(int i) const override { return r[i].as<std::string>(); }
  std::int64_t Int(int i) const override { return r[i].as<std::int64_t>(); }
  double Double(int i) const override { return r[i].as<double>(); }
  const pqxx::row& r;
};

class Tx final : public SqlTx {
 public:
  explicit Tx(pqxx::work& tx) : tx_(tx) {}

  absl::StatusOr<std::int64_t> Exec(std::string_view sql, SqlArgs args) override {
    return static_cast<std::int64_t>(Run(sql, args).affected_rows());
  }

  absl::Status Query(std::string_view sql, SqlArgs args,
                     absl::FunctionRef<absl::Status(const SqlRow&)> row) override {
    const pqxx::result result = Run(sql, args);
    for (const auto& r : result) {
      if (auto s = row(Row(r)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  // Every argument goes as text (NULL as a null pointer); PostgreSQL takes each one's type
  // from where the statement uses it.
  pqxx::result Run(std::string_view sql, SqlArgs args) {
    std::vector<std::optional<std::string>> values;
    values.reserve(args.size());
    for (const SqlArg& a : args) {
      if (const auto* n = std::get_if<std::int64_t>(&a)) {
        values.emplace_back(std::to_string(*n));
      } else if (const auto* t = std::get_if<std::string>(&a)) {
        values.emplace_back(*t);
      } else {
        values.emplace_back(std::nullopt);
      }
    }
    std::vector<const char*> params;
    params.reserve(values.size());
    for (const auto& v : values) params.push_back(NullableParam(v));
    return tx_.exec_params(sql::ForPostgres(sql), pqxx::prepare::make_dynamic_params(params));
  }

  pqxx::work& tx_;
};

class Runner final : public SqlRunner {
 public:
  explicit Runner(Context& ctx) : ctx_(ctx) {}
  std::int64_t Now() const override { return ctx_.Now(); }
  absl::Status InTransaction(absl::FunctionRef<absl::Status(SqlTx&)> work) override {
    return ctx_.Run([&](PgPool::Lease& lease) -> absl::Status {
      pqxx::work tx(lease.conn());
      Tx t(tx);
      if (auto s = work(t); !s.ok()) return s;  // rolled back when tx goes
      tx.commit();
      return absl::OkStatus();
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<SqlRunner> NewSqlRunner(Context& ctx) { return std::make_unique<Runner>(ctx); }

}  // namespace strata::storage::postgres
