// SQLite: the backend-neutral transaction (storage/sql_tx.h) on the one connection.
#include "sqlite/backend.h"
#include "storage/sql_tx.h"

namespace strata::storage::sqlitedb {
namespace {

struct Row final : SqlRow {
  explicit Row(const sqlite::Statement& s) : s(s) {}
  bool IsNull(int i) const override { return s.IsNull(i); }
  std::string Text(int i) const override { return s.Text(i); }
  std::int64_t Int(int i) const override { return s.Int(i); }
  double Double(int i) const override { return s.Double(i); }
  const sqlite::Statement& s;
};

class Tx final : public SqlTx {
 public:
  explicit Tx(sqlite::Connection& db) : db_(db) {}

  absl::StatusOr<std::int64_t> Exec(std::string_view sql, SqlArgs args) override {
    STRATA_ASSIGN_OR_RETURN(auto s, Prepare(sql, args));
    STRATA_RETURN_IF_ERROR(s.Run());
    return db_.Changes();
  }

  absl::Status Query(std::string_view sql, SqlArgs args,
                     absl::FunctionRef<absl::Status(const SqlRow&)> row) override {
    STRATA_ASSIGN_OR_RETURN(auto s, Prepare(sql, args));
    const Row r(s);
    return s.ForEachRow([&]() -> absl::Status { return row(r); });
  }

 private:
  absl::StatusOr<sqlite::Statement> Prepare(std::string_view sql, SqlArgs args) {
    STRATA_ASSIGN_OR_RETURN(auto s, db_.Prepare(sql));
    int i = 0;
    for (const SqlArg& a : args) {
      ++i;
      if (const auto* n = std::get_if<std::int64_t>(&a)) {
        s.Bind(i, *n);
      } else if (const auto* t = std::get_if<std::string>(&a)) {
        s.Bind(i, *t);
      } else {
        s.BindNull(i);
      }
    }
    return s;
  }

  sqlite::Connection& db_;
};

class Runner final : public SqlRunner {
 public:
  explicit Runner(Context& ctx) : ctx_(ctx) {}
  std::int64_t Now() const override { return ctx_.Now(); }
  absl::Status InTransaction(absl::FunctionRef<absl::Status(SqlTx&)> work) override {
    return ctx_.Run([&](sqlite::Connection& db) -> absl::Status {
      STRATA_ASSIGN_OR_RETURN(auto tx, sqlite::Transaction::Begin(db));
      Tx t(db);
      STRATA_RETURN_IF_ERROR(work(t));
      return tx.Commit();
    });
  }

 private:
  Context& ctx_;
};

}  // namespace

std::unique_ptr<SqlRunner> NewSqlRunner(Context& ctx) { return std::make_unique<Runner>(ctx); }

}  // namespace strata::storage::sqlitedb
