// Name resolution and type checking (the CEL language definition, "Type Checking"): every
// call resolves to one of the subset's functions, every identifier to a variable slot or a
// type name, and, when checked, every node gets a type; what cannot be typed is refused.
#include <map>
#include <set>
#include <string>

#include <re2/re2.h>

#include "rules/ast.h"

namespace strata::rules {

namespace {

using Tag = Type::Tag;

Type T(Tag t) { return Type::Of(t); }
bool IsDyn(const Type& t) { return t.tag == Tag::kDyn; }
bool IsNum(const Type& t) { return t.tag == Tag::kInt || t.tag == Tag::kUint || t.tag == Tag::kDouble; }

// Whether a value of one type can meet a value of the other (dyn meets anything).
bool Compatible(const Type& a, const Type& b) {
  if (IsDyn(a) || IsDyn(b)) return true;
  if (a.tag != b.tag) return false;
  if (a.tag == Tag::kList) return !a.params || !b.params || Compatible(a.elem(), b.elem());
  if (a.tag == Tag::kMap) {
    return !a.params || !b.params || (Compatible(a.key(), b.key()) && Compatible(a.value(), b.value()));
  }
  return true;
}

// The type both are: the same type, or dyn where they differ.
Type Join(const Type& a, const Type& b) {
  // An empty literal's list or map has no element type yet: it takes the other's.
  if (a.tag == b.tag && (a.tag == Tag::kList || a.tag == Tag::kMap)) {
    if (!a.params) return b;
    if (!b.params) return a;
  }
  if (a == b) return a;
  if (a.tag == b.tag && a.tag == Tag::kList && a.params && b.params) return Type::List(Join(a.elem(), b.elem()));
  if (a.tag == b.tag && a.tag == Tag::kMap && a.params && b.params) {
    return Type::Map(Join(a.key(), b.key()), Join(a.value(), b.value()));
  }
  return Type::Dyn();
}

struct FunctionInfo {
  Op op;
  bool global;  // callable as f(x)
  bool member;  // callable as x.f()
};

const std::map<std::string, FunctionInfo, std::less<>>& Functions() {
  static const std::map<std::string, FunctionInfo, std::less<>> fns = {
      {"_&&_", {Op::kAnd, true, false}},        {"_||_", {Op::kOr, true, false}},
      {"!_", {Op::kNot, true, false}},          {"_?_:_", {Op::kCond, true, false}},
      {"_==_", {Op::kEq, true, false}},         {"_!=_", {Op::kNe, true, false}},
      {"_<_", {Op::kLt, true, false}},          {"_<=_", {Op::kLe, true, false}},
      {"_>_", {Op::kGt, true, false}},          {"_>=_", {Op::kGe, true, false}},
      {"@in", {Op::kIn, true, false}},          {"_+_", {Op::kAdd, true, false}},
      {"_-_", {Op::kSub, true, false}},         {"_*_", {Op::kMul, true, false}},
      {"_/_", {Op::kDiv, true, false}},         {"_%_", {Op::kMod, true, false}},
      {"-_", {Op::kNeg, true, false}},          {"_[_]", {Op::kIndex, true, false}},
      {"size", {Op::kSize, true, true}},        {"contains", {Op::kContains, false, true}},
      {"startsWith", {Op::kStartsWith, false, true}}, {"endsWith", {Op::kEndsWith, false, true}},
      {"matches", {Op::kMatches, true, true}},  {"int", {Op::kToInt, true, false}},
      {"uint", {Op::kToUint, true, false}},     {"double", {Op::kToDouble, true, false}},
      {"string", {Op::kToString, true, false}}, {"bool", {Op::kToBool, true, false}},
      {"bytes", {Op::kToBytes, true, false}},   {"dyn", {Op::kToDyn, true, false}},
      {"type", {Op::kTypeOf, true, false}},     {"math.greatest", {Op::kGreatest, true, false}},
      {"math.least", {Op::kLeast, true, false}}, {"math.ceil", {Op::kCeil, true, false}},
      {"math.floor", {Op::kFloor, true, false}}, {"math.round", {Op::kRound, true, false}},
      {"math.trunc", {Op::kTrunc, true, false}}, {"math.abs", {Op::kAbs, true, false}},
      {"math.sign", {Op::kSign, true, false}},  {"math.isNaN", {Op::kIsNaN, true, false}},
      {"math.isInf", {Op::kIsInf, true, false}}, {"math.isFinite", {Op::kIsFinite, true, false}},
      {"math.bitAnd", {Op::kBitAnd, true, false}}, {"math.bitOr", {Op::kBitOr, true, false}},
      {"math.bitXor", {Op::kBitXor, true, false}}, {"math.bitNot", {Op::kBitNot, true, false}},
      {"math.bitShiftLeft", {Op::kShiftLeft, true, false}}, {"math.bitShiftRight", {Op::kShiftRight, true, false}},
      // CEL's strings extension, except format() and quote().
      {"charAt", {Op::kCharAt, false, true}},   {"indexOf", {Op::kIndexOf, false, true}},
      {"lastIndexOf", {Op::kLastIndexOf, false, true}}, {"lowerAscii", {Op::kLowerAscii, false, true}},
      {"upperAscii", {Op::kUpperAscii, false, true}}, {"replace", {Op::kReplace, false, true}},
      {"split", {Op::kSplit, false, true}},     {"substring", {Op::kSubstring, false, true}},
      {"trim", {Op::kTrim, false, true}},       {"join", {Op::kJoin, false, true}},
      {"reverse", {Op::kReverse, false, true}},
  };
  return fns;
}

// CEL functions this subset leaves out: refused as UNIMPLEMENTED rather than as unknown.
bool OutOfSubset(const std::string& name) {
  static const std::set<std::string, std::less<>> names = {
      "timestamp", "duration", "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate",
      "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "getMilliseconds", "optional.of",
      "optional.none", "optional.ofNonZeroValue", "hasValue", "value", "or", "orValue", "format",
      "quote", "strings.quote", "base64.encode", "base64.decode", "sets.contains",
      "sets.equivalent", "sets.intersects", "lists.range", "distinct", "flatten", "slice", "sort", "sortBy",
      "encode", "decode", "cel.bind", "cel.block", "cel.index", "cel.iterVar", "cel.accuVar"};
  return names.count(name) > 0 || name.rfind("google.", 0) == 0;
}

class Checker {
 public:
  Checker(const Env& env, bool checked) : env_(env), checked_(checked) {}

  std::vector<std::string> variables() && { return std::move(variables_); }

  void Visit(Node& n) {
    switch (n.kind) {
      case NodeKind::kLiteral: n.type = LiteralType(n.literal); return;
      case NodeKind::kIdent: return Ident(n);
      case NodeKind::kSelect: return Select(n);
      case NodeKind::kList: return ListLiteral(n);
      case NodeKind::kMap: return MapLiteral(n);
      case NodeKind::kCall: return Call(n);
    }
  }

 private:
  [[noreturn]] static void Fail(const Node& n, std::string message) {
    throw CompileError{absl::StatusCode::kInvalidArgument, n.pos, std::move(message)};
  }

  static Type LiteralType(const Value& v) {
    switch (v.kind()) {
      case Kind::kNull: return T(Tag::kNull);
      case Kind::kBool: return T(Tag::kBool);
      case Kind::kInt: return T(Tag::kInt);
      case Kind::kUint: return T(Tag::kUint);
      case Kind::kDouble: return T(Tag::kDouble);
      case Kind::kString: return T(Tag::kString);
      case Kind::kBytes: return T(Tag::kBytes);
      case Kind::kType: return T(Tag::kType);
      default: return Type::Dyn();
    }
  }

  void Variable(Node& n, Type type) {
    auto it = slots_.find(n.name);
    if (it == slots_.end()) {
      it = slots_.emplace(n.name, static_cast<int>(variables_.size())).first;
      variables_.push_back(n.name);
    }
    n.slot = it->second;
    n.type = checked_ ? std::move(type) : Type::Dyn();
  }

  void Ident(Node& n) {
    if (const Type* t = env_.Find(n.name)) return Variable(n, *t);
    static const std::set<std::string, std::less<>> type_names = {"int",   "uint",  "double", "bool", "string",
                                                                 "bytes", "list",  "map",    "null_type", "type"};
    if (type_names.count(n.name) > 0) {
      n.kind = NodeKind::kLiteral;
      n.literal = Value::TypeOf(n.name);
      n.type = T(Tag::kType);
      return;
    }
    if (env_.undeclared_are_dyn() || !checked_) return Variable(n, Type::Dyn());
    Fail(n, "undeclared reference to '" + n.name + "'");
  }

  // a.b.c when every part is an identifier: "a.b.c", else "".
  static std::string QualifiedName(const Node& n) {
    if (n.kind == NodeKind::kIdent) return n.name;
    if (n.kind != NodeKind::kSelect || n.test_only) return "";
    std::string left = QualifiedName(*n.args[0]);
    return left.empty() ? "" : left + "." + n.name;
  }

  void Select(Node& n) {
    if (!n.test_only && env_.has_dotted_names()) {
      // A declared variable with a dotted name wins over field selection.
      if (const std::string q = QualifiedName(n); !q.empty() && env_.Find(q) != nullptr) {
        n.kind = NodeKind::kIdent;
        n.name = q;
        n.args.clear();
        return Ident(n);
      }
    }
    Node& target = *n.args[0];
    Visit(target);
    const Type& t = target.type;
    if (n.test_only) {
      if (!IsDyn(t) && t.tag != Tag::kMap) Overload(n, "has", {t});
      n.type = T(Tag::kBool);
      return;
    }
    if (IsDyn(t)) {
      n.type = Type::Dyn();
    } else if (t.tag == Tag::kMap) {
      if (t.params && !Compatible(t.key(), T(Tag::kString))) Fail(n, "map(" + t.key().Name() + ", ...) has no fields");
      n.type = t.params ? t.value() : Type::Dyn();
    } else if (checked_) {
      Fail(n, "type '" + t.Name() + "' does not support field selection");
    } else {
      n.type = Type::Dyn();
    }
  }

  void ListLiteral(Node& n) {
    if (n.args.empty()) {
      n.type = T(Tag::kList);  // no element type until it meets another list
      return;
    }
    Type elem;
    for (std::size_t i = 0; i < n.args.size(); ++i) {
      Visit(*n.args[i]);
      elem = i == 0 ? n.args[i]->type : Join(elem, n.args[i]->type);
    }
    n.type = Type::List(elem);
  }

  void MapLiteral(Node& n) {
    if (n.args.empty()) {
      n.type = T(Tag::kMap);
      return;
    }
    Type key, value;
    for (std::size_t i = 0; i < n.args.size(); i += 2) {
      Visit(*n.args[i]);
      Visit(*n.args[i + 1]);
      const Type& k = n.args[i]->type;
      if (checked_ && !IsDyn(k) && k.tag != Tag::kInt && k.tag != Tag::kUint && k.tag != Tag::kBool &&
          k.tag != Tag::kString) {
        Fail(*n.args[i], "a map key must be int, uint, bool or string, not " + k.Name());
      }
      key = i == 0 ? k : Join(key, k);
      value = i == 0 ? n.args[i + 1]->type : Join(value, n.args[i + 1]->type);
    }
    n.type = Type::Map(key, value);
  }

  // A call's type when it has no overload for these argument types: an error when checked,
  // dyn (and a runtime error) when not.
  void Overload(Node& n, const std::string& name, const std::vector<Type>& args) {
    if (!checked_) {
      n.type = Type::Dyn();
      return;
    }
    std::string list;
    for (const Type& a : args) list += (list.empty() ? "" : ", ") + a.Name();
    Fail(n, "found no matching overload for '" + name + "' applied to '(" + list + ")'");
  }

  void Call(Node& n) {
    // math.f(x): a namespaced function, when `math` is not a variable.
    if (n.member_call && n.args[0]->kind == NodeKind::kIdent && env_.Find(n.args[0]->name) == nullptr) {
      const std::string qualified = n.args[0]->name + "." + n.name;
      if (Functions().count(qualified) > 0 || OutOfSubset(qualified)) {
        n.name = qualified;
        n.member_call = false;
        n.args.erase(n.args.begin());
      }
    }
    auto it = Functions().find(n.name);
    if (it == Functions().end() || (n.member_call ? !it->second.member : !it->second.global)) {
      if (OutOfSubset(n.name)) {
        throw CompileError{absl::StatusCode::kUnimplemented, n.pos, "function '" + n.name + "' is not in the subset"};
      }
      if (it == Functions().end()) {
        if (!checked_) {
          // Unchecked, an unknown function is an error when it is called (which || or &&
          // may absorb), as CEL has it.
          for (auto& arg : n.args) Visit(*arg);
          n.op = Op::kNone;
          n.type = Type::Dyn();
          return;
        }
        Fail(n, "undeclared reference to '" + n.name + "'");
      }
      Fail(n, n.member_call ? "'" + n.name + "' is not a method: call it as " + n.name + "(x)"
                            : "'" + n.name + "' is a method: call it as x." + n.name + "()");
    }
    n.op = it->second.op;
    std::vector<Type> a;
    for (auto& arg : n.args) {
      Visit(*arg);
      a.push_back(arg->type);
    }
    Type result = Type::Dyn();
    const std::size_t argc = a.size();
    auto arity = [&](std::size_t want) {
      if (argc != want) {
        Fail(n, "'" + n.name + "' takes " + std::to_string(want - (n.member_call ? 1 : 0)) + " argument" +
                    (want - (n.member_call ? 1 : 0) == 1 ? "" : "s"));
      }
    };
    auto is = [&](std::size_t i, std::initializer_list<Tag> tags) {
      if (IsDyn(a[i])) return true;
      for (Tag t : tags) {
        if (a[i].tag == t) return true;
      }
      return false;
    };
    bool ok = true;
    switch (n.op) {
      case Op::kAnd:
      case Op::kOr:
        ok = is(0, {Tag::kBool}) && is(1, {Tag::kBool});
        result = T(Tag::kBool);
        break;
      case Op::kNot:
        ok = is(0, {Tag::kBool});
        result = T(Tag::kBool);
        break;
      case Op::kCond:
        ok = is(0, {Tag::kBool}) && Compatible(a[1], a[2]);
        result = Join(a[1], a[2]);
        break;
      case Op::kEq:
      case Op::kNe:
        ok = Compatible(a[0], a[1]);
        result = T(Tag::kBool);
        break;
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
        ok = IsDyn(a[0]) || IsDyn(a[1]) || (IsNum(a[0]) && IsNum(a[1])) ||
             (a[0].tag == a[1].tag && (a[0].tag == Tag::kString || a[0].tag == Tag::kBytes || a[0].tag == Tag::kBool));
        result = T(Tag::kBool);
        break;
      case Op::kIn:
        if (a[1].tag == Tag::kList) ok = !a[1].params || Compatible(a[0], a[1].elem());
        else if (a[1].tag == Tag::kMap) ok = !a[1].params || Compatible(a[0], a[1].key());
        else ok = IsDyn(a[1]);
        result = T(Tag::kBool);
        break;
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod: {
        const bool add = n.op == Op::kAdd;
        auto operand = [&](const Type& t) {
          if (IsDyn(t)) return true;
          if (n.op == Op::kMod) return t.tag == Tag::kInt || t.tag == Tag::kUint;
          if (IsNum(t)) return true;
          return add && (t.tag == Tag::kString || t.tag == Tag::kBytes || t.tag == Tag::kList);
        };
        ok = operand(a[0]) && operand(a[1]) && Compatible(a[0], a[1]);
        result = IsDyn(a[0]) ? a[1] : (IsDyn(a[1]) ? a[0] : Join(a[0], a[1]));
        break;
      }
      case Op::kNeg:
        ok = is(0, {Tag::kInt, Tag::kDouble});
        result = a[0];
        break;
      case Op::kIndex:
        if (a[0].tag == Tag::kList) {
          ok = is(1, {Tag::kInt, Tag::kUint, Tag::kDouble});
          result = a[0].params ? a[0].elem() : Type::Dyn();
        } else if (a[0].tag == Tag::kMap) {
          ok = !a[0].params || Compatible(a[1], a[0].key()) || (IsNum(a[1]) && IsNum(a[0].key()));
          result = a[0].params ? a[0].value() : Type::Dyn();
        } else {
          ok = IsDyn(a[0]);
        }
        break;
      case Op::kSize:
        arity(1);
        ok = is(0, {Tag::kString, Tag::kBytes, Tag::kList, Tag::kMap});
        result = T(Tag::kInt);
        break;
      case Op::kContains:
      case Op::kStartsWith:
      case Op::kEndsWith:
      case Op::kMatches:
        arity(2);
        ok = is(0, {Tag::kString}) && is(1, {Tag::kString});
        result = T(Tag::kBool);
        if (n.op == Op::kMatches && n.args[1]->kind == NodeKind::kLiteral && n.args[1]->literal.is(Kind::kString)) {
          RE2::Options options;
          options.set_log_errors(false);
          options.set_max_mem(std::int64_t{1} << 20);
          auto re = std::make_shared<RE2>(n.args[1]->literal.string_value(), options);
          if (!re->ok()) Fail(*n.args[1], "invalid regular expression: " + re->error());
          n.compiled = std::move(re);
        }
        break;
      case Op::kToInt:
      case Op::kToUint:
      case Op::kToDouble:
        arity(1);
        ok = is(0, {Tag::kInt, Tag::kUint, Tag::kDouble, Tag::kString});
        result = T(n.op == Op::kToInt ? Tag::kInt : (n.op == Op::kToUint ? Tag::kUint : Tag::kDouble));
        break;
      case Op::kToString:
        arity(1);
        ok = is(0, {Tag::kInt, Tag::kUint, Tag::kDouble, Tag::kBool, Tag::kString, Tag::kBytes});
        result = T(Tag::kString);
        break;
      case Op::kToBool:
        arity(1);
        ok = is(0, {Tag::kBool, Tag::kString});
        result = T(Tag::kBool);
        break;
      case Op::kToBytes:
        arity(1);
        ok = is(0, {Tag::kBytes, Tag::kString});
        result = T(Tag::kBytes);
        break;
      case Op::kToDyn:
        arity(1);
        result = Type::Dyn();
        break;
      case Op::kTypeOf:
        arity(1);
        result = T(Tag::kType);
        break;
      case Op::kGreatest:
      case Op::kLeast: {
        if (argc == 0) Fail(n, n.name + "() takes at least one argument");
        std::vector<Type> elems = a;
        if (argc == 1 && a[0].tag == Tag::kList) elems = {a[0].params ? a[0].elem() : Type::Dyn()};
        for (const Type& t : elems) ok = ok && (IsDyn(t) || IsNum(t));
        result = elems[0];
        for (const Type& t : elems) result = Join(result, t);
        if (argc == 1 && IsDyn(a[0])) result = Type::Dyn();
        break;
      }
      case Op::kCeil:
      case Op::kFloor:
      case Op::kRound:
      case Op::kTrunc:
        arity(1);
        ok = is(0, {Tag::kDouble});
        result = T(Tag::kDouble);
        break;
      case Op::kAbs:
      case Op::kSign:
        arity(1);
        ok = is(0, {Tag::kInt, Tag::kUint, Tag::kDouble});
        result = a[0];
        break;
      case Op::kIsNaN:
      case Op::kIsInf:
      case Op::kIsFinite:
        arity(1);
        ok = is(0, {Tag::kDouble});
        result = T(Tag::kBool);
        break;
      case Op::kBitAnd:
      case Op::kBitOr:
      case Op::kBitXor:
        arity(2);
        ok = is(0, {Tag::kInt, Tag::kUint}) && is(1, {Tag::kInt, Tag::kUint}) && Compatible(a[0], a[1]);
        result = IsDyn(a[0]) ? a[1] : a[0];
        break;
      case Op::kBitNot:
        arity(1);
        ok = is(0, {Tag::kInt, Tag::kUint});
        result = a[0];
        break;
      case Op::kShiftLeft:
      case Op::kShiftRight:
        arity(2);
        ok = is(0, {Tag::kInt, Tag::kUint}) && is(1, {Tag::kInt});
        result = a[0];
        break;
      case Op::kCharAt:
        arity(2);
        ok = is(0, {Tag::kString}) && is(1, {Tag::kInt});
        result = T(Tag::kString);
        break;
      case Op::kIndexOf:
      case Op::kLastIndexOf:
        if (argc != 2 && argc != 3) Fail(n, "'" + n.name + "' takes 1 or 2 arguments");
        ok = is(0, {Tag::kString}) && is(1, {Tag::kString}) && (argc == 2 || is(2, {Tag::kInt}));
        result = T(Tag::kInt);
        break;
      case Op::kLowerAscii:
      case Op::kUpperAscii:
      case Op::kTrim:
      case Op::kReverse:
        arity(1);
        ok = is(0, {Tag::kString});
        result = T(Tag::kString);
        break;
      case Op::kReplace:
        if (argc != 3 && argc != 4) Fail(n, "'replace' takes 2 or 3 arguments");
        ok = is(0, {Tag::kString}) && is(1, {Tag::kString}) && is(2, {Tag::kString}) && (argc == 3 || is(3, {Tag::kInt}));
        result = T(Tag::kString);
        break;
      case Op::kSplit:
        if (argc != 2 && argc != 3) Fail(n, "'split' takes 1 or 2 arguments");
        ok = is(0, {Tag::kString}) && is(1, {Tag::kString}) && (argc == 2 || is(2, {Tag::kInt}));
        result = Type::List(T(Tag::kString));
        break;
      case Op::kSubstring:
        if (argc != 2 && argc != 3) Fail(n, "'substring' takes 1 or 2 arguments");
        ok = is(0, {Tag::kString}) && is(1, {Tag::kInt}) && (argc == 2 || is(2, {Tag::kInt}));
        result = T(Tag::kString);
        break;
      case Op::kJoin:
        if (argc != 1 && argc != 2) Fail(n, "'join' takes 0 or 1 arguments");
        ok = (IsDyn(a[0]) || (a[0].tag == Tag::kList && (!a[0].params || Compatible(a[0].elem(), T(Tag::kString))))) &&
             (argc == 1 || is(1, {Tag::kString}));
        result = T(Tag::kString);
        break;
      case Op::kNone: break;
    }
    if (!ok) return Overload(n, n.name, a);
    n.type = checked_ ? result : Type::Dyn();
  }

  const Env& env_;
  bool checked_;
  std::map<std::string, int, std::less<>> slots_;
  std::vector<std::string> variables_;
};

}  // namespace

std::vector<std::string> Check(Node& root, const Env& env, bool checked) {
  Checker c(env, checked);
  c.Visit(root);
  return std::move(c).variables();
}

}  // namespace strata::rules
