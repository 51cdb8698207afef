// The command store, written once for both backends on storage/sql_tx.h: every statement
// below is portable SQL (see sql.h for the rules) and runs as it is on SQLite and PostgreSQL.
#include <string>
#include <vector>

#include <absl/strings/str_cat.h>
#include <google/protobuf/util/json_util.h>

#include "storage/codec.h"
#include "storage/sql_tx.h"
#include "storage/store.h"

namespace strata::storage {
namespace {

constexpr std::int64_t kQueued = v1::COMMAND_STATE_QUEUED;
constexpr std::int64_t kFirstFinal = v1::COMMAND_STATE_SUCCEEDED;  // this and above are final
constexpr std::int64_t kExpired = v1::COMMAND_STATE_EXPIRED;
constexpr std::int64_t kCancelled = v1::COMMAND_STATE_CANCELLED;

// The column order CommandFromRow reads.
#define STRATA_COMMAND_COLUMNS                                                                       \
  "command_id, device_id, edge_id, name, params, timeout_ms, expires_at, idempotency_key, state," \
  " result, error, created_at, updated_at"

constexpr std::string_view kSelectDeviceEdge = "SELECT edge_id FROM devices WHERE tenant_id = ?1 AND device_id = ?2";
constexpr std::string_view kInsertCommand =
    "INSERT INTO commands (tenant_id, command_id, device_id, edge_id, name, params, timeout_ms, expires_at,"
    " idempotency_key, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)"
    " ON CONFLICT (tenant_id, device_id, idempotency_key) DO NOTHING";
constexpr std::string_view kSelectByKey = "SELECT " STRATA_COMMAND_COLUMNS
                                          " FROM commands WHERE tenant_id = ?1 AND device_id = ?2 AND"
                                          " idempotency_key = ?3";
constexpr std::string_view kSelectCommand =
    "SELECT " STRATA_COMMAND_COLUMNS " FROM commands WHERE tenant_id = ?1 AND command_id = ?2";
constexpr std::string_view kSelectHistory =
    "SELECT state, at, detail FROM command_transitions WHERE tenant_id = ?1 AND command_id = ?2"
    " ORDER BY at, state";
// ?3: the state, 0 for all; ?4, ?5: the cursor (created_at, command_id), ?4 = -1 for none.
constexpr std::string_view kListCommands =
    "SELECT " STRATA_COMMAND_COLUMNS
    " FROM commands WHERE tenant_id = ?1 AND device_id = ?2 AND (CAST(?3 AS INTEGER) = 0 OR state = ?3)"
    " AND (CAST(?4 AS BIGINT) = -1 OR created_at < ?4 OR (created_at = ?4 AND command_id < ?5))"
    " ORDER BY created_at DESC, command_id DESC LIMIT ?6";
constexpr std::string_view kInsertTransition =
    "INSERT INTO command_transitions (tenant_id, command_id, state, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (tenant_id, command_id, state) DO NOTHING";
constexpr std::string_view kCancel =
    "UPDATE commands SET state = ?3, error = ?4, cancel_pending = 1, updated_at = ?5"
    " WHERE tenant_id = ?1 AND command_id = ?2 AND state < ?6";
constexpr std::string_view kPendingCommands =
    "SELECT command_id, device_id, name, params, timeout_ms, expires_at, created_at FROM commands"
    " WHERE tenant_id = ?1 AND edge_id = ?2 AND state = ?3 AND expires_at > ?4"
    " ORDER BY created_at, command_id LIMIT ?5";
constexpr std::string_view kPendingCancels =
    "SELECT command_id FROM commands WHERE tenant_id = ?1 AND edge_id = ?2 AND state = ?3 AND cancel_pending = 1"
    " ORDER BY command_id LIMIT ?4";
// An edge's transition, into the history: only for a command of that edge.
constexpr std::string_view kInsertEdgeTransition =
    "INSERT INTO command_transitions (tenant_id, command_id, state, at, detail)"
    " SELECT tenant_id, command_id, CAST(?3 AS INTEGER), CAST(?4 AS BIGINT), CAST(?5 AS TEXT) FROM commands"
    " WHERE tenant_id = ?1 AND command_id = ?2 AND edge_id = ?6"
    " ON CONFLICT (tenant_id, command_id, state) DO NOTHING";
// (Parameters PostgreSQL cannot type from where they stand are CAST.)
// ...and into the command, when it moves it forward from a state that is not final (?7: the
// result as JSON text, kept for SUCCEEDED and FAILED; ?8: the first final state).
constexpr std::string_view kAdvanceCommand =
    "UPDATE commands SET state = ?3, updated_at = ?4, error = ?5, result = ?7,"
    " cancel_pending = CASE WHEN ?3 >= ?8 THEN 0 ELSE cancel_pending END"
    " WHERE tenant_id = ?1 AND command_id = ?2 AND edge_id = ?6 AND state < ?8 AND state < ?3";
// A final state the edge reports for a command cancelled in the cloud: the edge has answered.
constexpr std::string_view kCancelAnswered =
    "UPDATE commands SET cancel_pending = 0"
    " WHERE tenant_id = ?1 AND command_id = ?2 AND edge_id = ?3 AND cancel_pending = 1";
constexpr std::string_view kSelectEdgeCommand =
    "SELECT state FROM commands WHERE tenant_id = ?1 AND command_id = ?2 AND edge_id = ?3";
// The commands handed out are marked, once: from then on their end is the edge's to report.
// ?5, ?6: the last one handed out (created_at, command_id), in the order they were read.
constexpr std::string_view kMarkDispatched =
    "UPDATE commands SET dispatched_at = ?4"
    " WHERE tenant_id = ?1 AND edge_id = ?2 AND state = ?3 AND dispatched_at IS NULL AND expires_at > ?4"
    " AND (created_at < ?5 OR (created_at = ?5 AND command_id <= ?6))";
// A QUEUED command past its expiry that no edge was given ends EXPIRED; one an edge was given
// only once the grace (?5) has passed too. The rows change first and their transitions follow
// from what changed, so that of two sweepers (two replicas) only the one that ended a command
// records it; a sweep ends at most ?6 commands.
constexpr std::string_view kExpireCommands =
    "UPDATE commands SET state = ?2, error = ?4, updated_at = ?1"
    " WHERE state = ?3 AND (tenant_id, command_id) IN (SELECT tenant_id, command_id FROM commands"
    "   WHERE state = ?3 AND expires_at <= ?1 AND (dispatched_at IS NULL OR expires_at + ?5 <= ?1) LIMIT ?6)"
    " RETURNING tenant_id, command_id";

constexpr std::string_view kExpiredDetail = "not delivered before expires_at";

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& m) {
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out).ok()) {
    return absl::InvalidArgumentError("params does not convert to JSON");
  }
  return out;
}

absl::StatusOr<v1::Command> CommandFromRow(const SqlRow& row, std::string_view tenant) {
  v1::Command c;
  c.set_command_id(row.Text(0));
  c.set_tenant_id(std::string(tenant));
  c.set_device_id(row.Text(1));
  c.set_edge_id(row.Text(2));
  c.set_name(row.Text(3));
  if (!google::protobuf::util::JsonStringToMessage(row.Text(4), c.mutable_params()).ok()) {
    return absl::InternalError("command " + c.command_id() + ": stored params are not a JSON object");
  }
  c.set_timeout_ms(row.Int(5));
  c.set_expires_at(row.Int(6));
  if (!row.IsNull(7)) c.set_idempotency_key(row.Text(7));
  c.set_state(static_cast<v1::CommandState>(row.Int(8)));
  if (const std::string result = row.Text(9); !result.empty()) {
    // The edge checked it is JSON; should it not parse, the text is kept as a string.
    if (!google::protobuf::util::JsonStringToMessage(result, c.mutable_result()).ok()) {
      c.mutable_result()->set_string_value(result);
    }
  }
  c.set_error(row.Text(10));
  c.set_created_at(row.Int(11));
  c.set_updated_at(row.Int(12));
  return c;
}

class Commands final : public CommandStore {
 public:
  explicit Commands(SqlRunner& db) : db_(db) {}

  absl::StatusOr<CreatedCommand> CreateCommand(std::string_view tenant, const v1::Command& command) override {
    const std::string t(tenant);
    auto json = ToJson(command.params());
    if (!json.ok()) return json.status();
    const std::string params = *std::move(json);
    SqlArg key = nullptr;
    if (!command.idempotency_key().empty()) key = command.idempotency_key();
    CreatedCommand out;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::int64_t now = db_.Now();
      std::optional<std::string> edge;
      bool found = false;
      if (auto s = tx.Query(kSelectDeviceEdge, {t, command.device_id()}, [&](const SqlRow& r) {
            found = true;
            if (!r.IsNull(0)) edge = r.Text(0);
            return absl::OkStatus();
          });
          !s.ok()) {
        return s;
      }
      if (!found) return NotFound("device", command.device_id());
      if (!edge || edge->empty()) {
        return absl::FailedPreconditionError("device '" + command.device_id() +
                                             "' is served by no edge (set its edge_id): commands reach devices "
                                             "through their edge");
      }
      auto inserted = tx.Exec(kInsertCommand, {t, command.command_id(), command.device_id(), *edge, command.name(),
                                               params, command.timeout_ms(), command.expires_at(), key, kQueued, now});
      if (!inserted.ok()) return inserted.status();
      if (*inserted == 0) {  // the key made one before
        out.created = false;
        if (auto s = ReadOne(tx, kSelectByKey, {t, command.device_id(), command.idempotency_key()}, tenant,
                             out.command);
            !s.ok()) {
          return s;
        }
        const std::string id = out.command.command_id();
        return ReadWithHistory(tx, tenant, id, out.command);
      }
      out.created = true;
      if (auto s = tx.Exec(kInsertTransition, {t, command.command_id(), kQueued, now, std::string()}); !s.ok()) {
        return s.status();
      }
      return ReadWithHistory(tx, tenant, command.command_id(), out.command);
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::Command> GetCommand(std::string_view tenant, std::string_view command_id) override {
    v1::Command out;
    auto s = db_.InTransaction([&](SqlTx& tx) { return ReadWithHistory(tx, tenant, command_id, out); });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::vector<v1::Command>> ListCommands(std::string_view tenant,
                                                        const CommandListQuery& query) override {
    std::vector<v1::Command> out;
    const std::int64_t before_ts = query.before ? query.before->created_at : -1;
    const std::string before_id = query.before ? query.before->command_id : std::string();
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      out.clear();
      return tx.Query(kListCommands,
                      {std::string(tenant), query.device_id, static_cast<std::int64_t>(query.state), before_ts,
                       before_id, static_cast<std::int64_t>(query.page_size) + 1},
                      [&](const SqlRow& r) -> absl::Status {
                        auto c = CommandFromRow(r, tenant);
                        if (!c.ok()) return c.status();
                        out.push_back(*std::move(c));
                        return absl::OkStatus();
                      });
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::Command> CancelCommand(std::string_view tenant, std::string_view command_id) override {
    const std::string t(tenant), id(command_id);
    v1::Command out;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::int64_t now = db_.Now();
      auto changed = tx.Exec(kCancel, {t, id, kCancelled, std::string("cancelled through the API"), now, kFirstFinal});
      if (!changed.ok()) return changed.status();
      if (*changed == 1) {
        if (auto s = tx.Exec(kInsertTransition, {t, id, kCancelled, now, std::string("cancelled through the API")});
            !s.ok()) {
          return s.status();
        }
      }
      if (auto s = ReadWithHistory(tx, tenant, command_id, out); !s.ok()) return s;
      if (*changed == 0) {
        return absl::FailedPreconditionError("command '" + id + "' has ended (" +
                                             v1::CommandState_Name(out.state()) + "); only a command that has not "
                                             "ended can be cancelled");
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<CommandDispatch> PendingForEdge(std::string_view tenant, std::string_view edge_id,
                                                 std::int64_t now_ms, int limit) override {
    const std::string t(tenant), e(edge_id);
    CommandDispatch out;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      out = {};
      std::int64_t last_created = 0;
      auto s = tx.Query(kPendingCommands, {t, e, kQueued, now_ms, static_cast<std::int64_t>(limit)},
                        [&](const SqlRow& r) {
                          auto& c = out.commands.emplace_back();
                          c.set_command_id(r.Text(0));
                          c.set_device_id(r.Text(1));
                          c.set_name(r.Text(2));
                          c.set_params_json(r.Text(3));
                          c.set_timeout_ms(r.Int(4));
                          c.set_expires_at(r.Int(5));
                          last_created = r.Int(6);
                          return absl::OkStatus();
                        });
      if (!s.ok()) return s;
      if (!out.commands.empty()) {
        if (auto n = tx.Exec(kMarkDispatched, {t, e, kQueued, now_ms, last_created, out.commands.back().command_id()});
            !n.ok()) {
          return n.status();
        }
      }
      return tx.Query(kPendingCancels, {t, e, kCancelled, static_cast<std::int64_t>(limit)}, [&](const SqlRow& r) {
        out.cancels.push_back(r.Text(0));
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::vector<UpdateOutcome>> ApplyCommandUpdates(
      std::string_view tenant, std::string_view edge_id,
      std::span<const v1::CommandUpdate* const> updates) override {
    const std::string t(tenant), e(edge_id);
    std::vector<UpdateOutcome> out;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      out.clear();
      const std::int64_t now = db_.Now();
      for (const v1::CommandUpdate* u : updates) {
        const std::int64_t state = u->state();
        if (state <= kQueued || state > kCancelled) {  // the cloud's own state, or none
          out.push_back(UpdateOutcome::kUnknown);
          continue;
        }
        const std::string detail = state == v1::COMMAND_STATE_SUCCEEDED ? std::string() : u->error();
        auto recorded = tx.Exec(kInsertEdgeTransition, {t, u->command_id(), state, u->at(), detail, e});
        if (!recorded.ok()) return recorded.status();
        if (*recorded == 0) {
          bool known = false;
          auto s = tx.Query(kSelectEdgeCommand, {t, u->command_id(), e}, [&](const SqlRow&) {
            known = true;
            return absl::OkStatus();
          });
          if (!s.ok()) return s;
          out.push_back(known ? UpdateOutcome::kDuplicate : UpdateOutcome::kUnknown);
        } else {
          out.push_back(UpdateOutcome::kRecorded);
        }
        if (out.back() == UpdateOutcome::kUnknown) continue;
        // Repeated too: the update of a recorded transition may have been lost with its ack
        // only if it was committed together, so this changes nothing the second time.
        if (auto s = tx.Exec(kAdvanceCommand, {t, u->command_id(), state, now, detail, e, u->result_json(),
                                               kFirstFinal});
            !s.ok()) {
          return s.status();
        }
        if (state >= kFirstFinal) {
          if (auto s = tx.Exec(kCancelAnswered, {t, u->command_id(), e}); !s.ok()) return s.status();
        }
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::int64_t> ExpireCommands(std::int64_t now_ms, std::int64_t dispatched_grace_ms,
                                              int limit) override {
    std::int64_t expired = 0;
    auto s = db_.InTransaction([&](SqlTx& tx) -> absl::Status {
      const std::string detail(kExpiredDetail);
      std::vector<std::pair<std::string, std::string>> ended;
      auto s = tx.Query(kExpireCommands,
                        {now_ms, kExpired, kQueued, detail, dispatched_grace_ms, static_cast<std::int64_t>(limit)},
                        [&](const SqlRow& r) {
                          ended.emplace_back(r.Text(0), r.Text(1));
                          return absl::OkStatus();
                        });
      if (!s.ok()) return s;
      for (const auto& [tenant, id] : ended) {
        if (auto n = tx.Exec(kInsertTransition, {tenant, id, kExpired, now_ms, detail}); !n.ok()) return n.status();
      }
      expired = static_cast<std::int64_t>(ended.size());
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return expired;
  }

 private:
  static absl::Status ReadOne(SqlTx& tx, std::string_view sql, SqlArgs args, std::string_view tenant,
                              v1::Command& out) {
    bool found = false;
    auto s = tx.Query(sql, args, [&](const SqlRow& r) -> absl::Status {
      auto c = CommandFromRow(r, tenant);
      if (!c.ok()) return c.status();
      out = *std::move(c);
      found = true;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (!found) return absl::NotFoundError("command not found");
    return absl::OkStatus();
  }

  static absl::Status ReadWithHistory(SqlTx& tx, std::string_view tenant, std::string_view command_id,
                                      v1::Command& out) {
    const std::string t(tenant), id(command_id);
    if (auto s = ReadOne(tx, kSelectCommand, {t, id}, tenant, out); !s.ok()) {
      return s.code() == absl::StatusCode::kNotFound ? NotFound("command", id) : s;
    }
    return tx.Query(kSelectHistory, {t, id}, [&](const SqlRow& r) {
      auto* h = out.add_history();
      h->set_state(static_cast<v1::CommandState>(r.Int(0)));
      h->set_at(r.Int(1));
      h->set_detail(r.Text(2));
      return absl::OkStatus();
    });
  }

  SqlRunner& db_;
};

#undef STRATA_COMMAND_COLUMNS

}  // namespace

std::unique_ptr<CommandStore> NewCommandStore(SqlRunner& runner) { return std::make_unique<Commands>(runner); }

}  // namespace strata::storage
