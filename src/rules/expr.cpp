#include <strata/rules/expr.h>

#include <string>

#include "rules/ast.h"

namespace strata::rules {

namespace {

absl::Status Build(std::string_view source, const Env& env, bool checked,
                              std::shared_ptr<const Node>& root, std::vector<std::string>& variables, Type& type) {
  try {
    NodePtr tree = Parse(source, env.limits());
    variables = Check(*tree, env, checked);
    type = tree->type;
    root = std::move(tree);
  } catch (const CompileError& e) {
    return absl::Status(e.code, std::to_string(e.pos.line) + ":" + std::to_string(e.pos.column) + ": " + e.message);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Program> Program::Compile(std::string_view source, const Env& env) {
  Program p;
  p.source_ = std::string(source);
  if (auto s = Build(source, env, true, p.root_, p.variables_, p.result_type_); !s.ok()) return s;
  return p;
}

absl::StatusOr<Program> Program::CompileUnchecked(std::string_view source, const Env& env) {
  Program p;
  p.source_ = std::string(source);
  if (auto s = Build(source, env, false, p.root_, p.variables_, p.result_type_); !s.ok()) return s;
  return p;
}

Value Program::Eval(std::span<const Value> slots) const {
  if (root_ == nullptr) return Value::Err("empty program");
  ResetEvalBudget();
  return Evaluate(*root_, slots);
}

}  // namespace strata::rules
