// The rules' expression language: a typed subset of Google's CEL (syntax and semantics as
// in the CEL specification; docs/rules.md lists what is in the subset and what is not).
//
// An expression is parsed and type-checked once, when a rule is created; a bad one is a
// clear error naming the line and column. What is outside the subset (comprehension macros,
// which are loops; timestamps; protobuf messages; optionals) is refused at compile time as
// UNIMPLEMENTED, never at run time. Evaluation is pure: no clock, no I/O, bounded by the
// expression's size, and an error (a missing key, a division by zero, an overflow) is a
// value that `&&`, `||` and `?:` treat as CEL says.
//
//   auto env = Env{}.Declare("attr", Type::Map(string, string)).UndeclaredAreDyn();
//   auto prog = Program::Compile("temperature > 85.0 && attr['zone'] == 'A'", env);
//   Value v = prog->Eval(slots);   // slots[i] is the value of prog->variables()[i]
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/statusor.h>

#include <strata/rules/value.h>

namespace strata::rules {

struct Node;  // the checked syntax tree (src/rules/ast.h)

struct Limits {
  std::size_t max_source_bytes = 16 * 1024;
  std::size_t max_depth = 100;    // nesting: parentheses, brackets, braces, calls' arguments, ! and -
  std::size_t max_nodes = 4096;   // size of the syntax tree
  std::size_t max_height = 256;   // height of the syntax tree (a + b + c + ... is as tall as long)
};

// What names mean when an expression is checked.
class Env {
 public:
  Env& Declare(std::string name, Type type) {
    if (name.find('.') != std::string::npos) dotted_ = true;
    variables_[std::move(name)] = std::move(type);
    return *this;
  }
  // An identifier that is not declared is a variable of type dyn (a reading's key) instead
  // of an error.
  Env& UndeclaredAreDyn(bool on = true) {
    undeclared_are_dyn_ = on;
    return *this;
  }
  Env& WithLimits(Limits limits) {
    limits_ = limits;
    return *this;
  }
  const Type* Find(const std::string& name) const {
    auto it = variables_.find(name);
    return it == variables_.end() ? nullptr : &it->second;
  }
  bool undeclared_are_dyn() const { return undeclared_are_dyn_; }
  // Whether a declared name has a dot (a.b.c may then name a variable).
  bool has_dotted_names() const { return dotted_; }
  const Limits& limits() const { return limits_; }

 private:
  std::map<std::string, Type> variables_;
  bool undeclared_are_dyn_ = false;
  bool dotted_ = false;
  Limits limits_;
};

class Program {
 public:
  // INVALID_ARGUMENT "<line>:<column>: <what>" for a syntax or type error; UNIMPLEMENTED
  // "<line>:<column>: ..." for CEL that is outside the subset.
  static absl::StatusOr<Program> Compile(std::string_view source, const Env& env);
  // Parsed but not type-checked: every variable is dyn and types are found when evaluated
  // (for CEL's conformance cases that say so).
  static absl::StatusOr<Program> CompileUnchecked(std::string_view source, const Env& env);

  // The variables the expression reads, in slot order.
  const std::vector<std::string>& variables() const { return variables_; }
  const Type& result_type() const { return result_type_; }
  const std::string& source() const { return source_; }

  // slots.size() must be variables().size(); an absent value is passed as an error value
  // (for example Value::Err("no such key: temperature")).
  Value Eval(std::span<const Value> slots) const;

 private:
  Program() = default;
  std::string source_;
  std::shared_ptr<const Node> root_;
  std::vector<std::string> variables_;
  Type result_type_;
};

}  // namespace strata::rules
