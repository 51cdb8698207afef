// The syntax tree of an expression (internal to strata::rules): the parser builds it, the
// checker types it and resolves names to variable slots and functions, and the evaluator
// walks it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/status.h>

#include <strata/rules/expr.h>
#include <strata/rules/value.h>

namespace strata::rules {

struct Pos {
  int line = 1;
  int column = 1;
};

// A compile error, thrown inside parse and check and turned into a Status by Compile.
struct CompileError {
  absl::StatusCode code;
  Pos pos;
  std::string message;
};

// The functions of the subset. Operators have CEL's internal names (_+_, _[_], ...).
enum class Op : std::uint8_t {
  kNone,
  kAnd, kOr, kNot, kCond,
  kEq, kNe, kLt, kLe, kGt, kGe, kIn,
  kAdd, kSub, kMul, kDiv, kMod, kNeg,
  kIndex,
  kSize, kContains, kStartsWith, kEndsWith, kMatches,
  kToInt, kToUint, kToDouble, kToString, kToBool, kToBytes, kToDyn, kTypeOf,
  kGreatest, kLeast, kCeil, kFloor, kRound, kTrunc, kAbs, kSign, kIsNaN, kIsInf, kIsFinite,
  kBitAnd, kBitOr, kBitXor, kBitNot, kShiftLeft, kShiftRight,
  kCharAt, kIndexOf, kLastIndexOf, kLowerAscii, kUpperAscii, kReplace, kSplit, kSubstring, kTrim, kJoin, kReverse,
};

enum class NodeKind : std::uint8_t { kLiteral, kIdent, kSelect, kCall, kList, kMap };

struct Node {
  NodeKind kind = NodeKind::kLiteral;
  Pos pos;
  Value literal;                              // kLiteral
  std::string name;                           // kIdent: name; kSelect: field; kCall: function
  std::vector<std::shared_ptr<Node>> args;    // kCall: arguments (a member call's receiver first);
                                              // kList: elements; kMap: key0, value0, key1, ...
  bool member_call = false;                   // kCall: written receiver.name(args)
  bool test_only = false;                     // kSelect: has(target.name)
  Type type;                                  // the checker's
  int slot = -1;                              // kIdent: the variable's slot
  std::size_t height = 1;                     // of the subtree (Limits::max_height)
  Op op = Op::kNone;                          // kCall: resolved
  std::shared_ptr<const void> compiled;       // kCall kMatches with a literal pattern: its RE2
};

using NodePtr = std::shared_ptr<Node>;

// The byte length of the valid UTF-8 sequence that starts at s[i] (shortest form, no
// surrogates), or 0.
std::size_t Utf8Length(std::string_view s, std::size_t i);

// Parses `source` (UTF-8) into a tree; throws CompileError.
NodePtr Parse(std::string_view source, const Limits& limits);

// Resolves names (variables to slots, calls to Ops) and, when `checked`, types every node
// and refuses what cannot be typed; throws CompileError. Returns the variables in slot order.
std::vector<std::string> Check(Node& root, const Env& env, bool checked);

// Evaluates a checked tree.
Value Evaluate(const Node& node, std::span<const Value> slots);

// What one evaluation may build (the strings, bytes and lists its operators and functions
// make, and what the regular expressions it compiles at run time cost): past it the result is
// an error value, so that a condition's cost stays bounded by its size, whatever its inputs.
inline constexpr std::size_t kEvalBudgetBytes = std::size_t{1} << 20;
// Starts an evaluation's budget (Program::Eval); evaluations on one thread do not nest.
void ResetEvalBudget();

}  // namespace strata::rules
