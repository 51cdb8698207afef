// Evaluation (the CEL language definition, "Evaluation" and "Functions"): strict in the
// arguments except &&, || and ?:, whose errors are absorbed as CEL says; overflow, division
// by zero, a missing key and a wrong type at run time are error values, never exceptions.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <re2/re2.h>

#include "rules/ast.h"
#include "rules/numeric.h"

namespace strata::rules {

namespace {

constexpr double kTwo63 = 9223372036854775808.0;
constexpr double kTwo64 = 18446744073709551616.0;

thread_local std::size_t budget_left = kEvalBudgetBytes;

// Takes `bytes` from this evaluation's budget; false when it does not have them.
bool Charge(std::size_t bytes) {
  if (bytes > budget_left) {
    budget_left = 0;
    return false;
  }
  budget_left -= bytes;
  return true;
}

Value OverBudget() {
  return Value::Err("the evaluation builds more than " + std::to_string(kEvalBudgetBytes) +
                    " bytes of strings, bytes and lists");
}

// A regular expression's memory, small: patterns come from rules, and many may run at once.
RE2::Options PatternOptions() {
  RE2::Options o;
  o.set_log_errors(false);
  o.set_max_mem(std::int64_t{1} << 20);
  return o;
}

Value NoOverload(const Node& n, std::span<const Value> args) {
  if (n.op == Op::kNone) return Value::Err("unbound function: " + n.name);
  std::string list;
  for (const Value& a : args) list += (list.empty() ? "" : ", ") + a.TypeName();
  return Value::Err("no such overload: " + n.name + "(" + list + ")");
}

Value NoOverload(const Node& n, const Value& a, const Value& b) {
  const Value args[2] = {a, b};
  return NoOverload(n, std::span<const Value>(args));
}

Value Overflow() { return Value::Err("integer overflow"); }

bool IsNumber(const Value& v) { return v.is(Kind::kInt) || v.is(Kind::kUint) || v.is(Kind::kDouble); }

// The number of code points of valid UTF-8.
std::int64_t CodePoints(const std::string& s) {
  std::int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool ValidUtf8(const std::string& s) {
  for (std::size_t i = 0, n = 0; i < s.size(); i += n) {
    if ((n = Utf8Length(s, i)) == 0) return false;
  }
  return true;
}

// A whole decimal integer, with an optional sign, as int() and uint() of a string take it.
template <typename T>
bool ParseWhole(const std::string& s, T& out) {
  const char* first = s.data();
  if (!s.empty() && s[0] == '+') ++first;
  auto r = std::from_chars(first, s.data() + s.size(), out);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

Value Arith(const Node& n, const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return NoOverload(n, a, b);
  switch (a.kind()) {
    case Kind::kInt: {
      const std::int64_t x = a.int_value(), y = b.int_value();
      std::int64_t r = 0;
      switch (n.op) {
        case Op::kAdd: return __builtin_add_overflow(x, y, &r) ? Overflow() : Value::Int(r);
        case Op::kSub: return __builtin_sub_overflow(x, y, &r) ? Overflow() : Value::Int(r);
        case Op::kMul: return __builtin_mul_overflow(x, y, &r) ? Overflow() : Value::Int(r);
        case Op::kDiv:
          if (y == 0) return Value::Err("division by zero");
          if (x == INT64_MIN && y == -1) return Overflow();
          return Value::Int(x / y);
        case Op::kMod:
          if (y == 0) return Value::Err("modulus by zero");
          if (x == INT64_MIN && y == -1) return Overflow();
          return Value::Int(x % y);
        default: break;
      }
      break;
    }
    case Kind::kUint: {
      const std::uint64_t x = a.uint_value(), y = b.uint_value();
      std::uint64_t r = 0;
      switch (n.op) {
        case Op::kAdd: return __builtin_add_overflow(x, y, &r) ? Overflow() : Value::Uint(r);
        case Op::kSub: return __builtin_sub_overflow(x, y, &r) ? Overflow() : Value::Uint(r);
        case Op::kMul: return __builtin_mul_overflow(x, y, &r) ? Overflow() : Value::Uint(r);
        case Op::kDiv: return y == 0 ? Value::Err("division by zero") : Value::Uint(x / y);
        case Op::kMod: return y == 0 ? Value::Err("modulus by zero") : Value::Uint(x % y);
        default: break;
      }
      break;
    }
    case Kind::kDouble: {
      const double x = a.double_value(), y = b.double_value();
      switch (n.op) {
        case Op::kAdd: return Value::Double(x + y);
        case Op::kSub: return Value::Double(x - y);
        case Op::kMul: return Value::Double(x * y);
        case Op::kDiv: return Value::Double(x / y);
        default: break;
      }
      break;
    }
    case Kind::kString:
      if (n.op != Op::kAdd) break;
      if (!Charge(a.string_value().size() + b.string_value().size())) return OverBudget();
      return Value::String(a.string_value() + b.string_value());
    case Kind::kBytes:
      if (n.op != Op::kAdd) break;
      if (!Charge(a.bytes_value().size() + b.bytes_value().size())) return OverBudget();
      return Value::BytesOf(a.bytes_value() + b.bytes_value());
    case Kind::kList:
      if (n.op == Op::kAdd) {
        if (!Charge((a.list().size() + b.list().size()) * sizeof(Value))) return OverBudget();
        List out = a.list();
        out.insert(out.end(), b.list().begin(), b.list().end());
        return Value::ListOf(std::move(out));
      }
      break;
    default: break;
  }
  return NoOverload(n, a, b);
}

// <, <=, >, >=: numbers across kinds; strings, bytes and bools with their own kind.
Value Ordering(const Node& n, const Value& a, const Value& b) {
  Order o;
  if (IsNumber(a) && IsNumber(b)) {
    o = CompareNumbers(a, b);
  } else if (a.kind() == b.kind() && a.is(Kind::kString)) {
    const int c = a.string_value().compare(b.string_value());
    o = c < 0 ? Order::kLess : (c > 0 ? Order::kGreater : Order::kEqual);
  } else if (a.kind() == b.kind() && a.is(Kind::kBytes)) {
    const int c = a.bytes_value().compare(b.bytes_value());
    o = c < 0 ? Order::kLess : (c > 0 ? Order::kGreater : Order::kEqual);
  } else if (a.kind() == b.kind() && a.is(Kind::kBool)) {
    o = a.bool_value() == b.bool_value() ? Order::kEqual : (a.bool_value() ? Order::kGreater : Order::kLess);
  } else {
    return NoOverload(n, a, b);
  }
  switch (n.op) {
    case Op::kLt: return Value::Bool(o == Order::kLess);
    case Op::kLe: return Value::Bool(o == Order::kLess || o == Order::kEqual);
    case Op::kGt: return Value::Bool(o == Order::kGreater);
    default: return Value::Bool(o == Order::kGreater || o == Order::kEqual);
  }
}

// A list index: an int, or a uint or a whole double that names one.
bool ListIndex(const Value& i, std::size_t size, std::size_t& out, Value& err) {
  std::int64_t at;
  if (i.is(Kind::kInt)) {
    at = i.int_value();
  } else if (i.is(Kind::kUint)) {
    at = i.uint_value() > static_cast<std::uint64_t>(INT64_MAX) ? -1 : static_cast<std::int64_t>(i.uint_value());
  } else if (i.is(Kind::kDouble)) {
    const double d = i.double_value();
    if (!(d == std::trunc(d)) || d >= kTwo63 || d < -kTwo63) {
      err = Value::Err("invalid list index: " + i.DebugString());
      return false;
    }
    at = static_cast<std::int64_t>(d);
  } else {
    err = Value::Err("no such overload: list index of type " + i.TypeName());
    return false;
  }
  if (at < 0 || static_cast<std::uint64_t>(at) >= size) {
    err = Value::Err("index out of range: " + std::to_string(at));
    return false;
  }
  out = static_cast<std::size_t>(at);
  return true;
}

Value Index(const Node& n, const Value& a, const Value& b) {
  if (a.is(Kind::kList)) {
    std::size_t at = 0;
    Value err;
    if (!ListIndex(b, a.list().size(), at, err)) return err;
    return a.list()[at];
  }
  if (a.is(Kind::kMap)) {
    if (!IsNumber(b) && !b.is(Kind::kString) && !b.is(Kind::kBool)) return NoOverload(n, a, b);
    const Value* v = a.Find(b);
    return v != nullptr ? *v : Value::Err("no such key: " + b.DebugString());
  }
  return NoOverload(n, a, b);
}

Value In(const Node& n, const Value& x, const Value& c) {
  if (c.is(Kind::kList)) {
    for (const Value& e : c.list()) {
      if (Equal(x, e)) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (c.is(Kind::kMap)) return Value::Bool(c.Find(x) != nullptr);
  return NoOverload(n, x, c);
}

Value ToInt(const Node& n, const Value& v) {
  switch (v.kind()) {
    case Kind::kInt: return v;
    case Kind::kUint:
      return v.uint_value() > static_cast<std::uint64_t>(INT64_MAX) ? Value::Err("int range error: " + v.DebugString())
                                                                    : Value::Int(static_cast<std::int64_t>(v.uint_value()));
    case Kind::kDouble: {
      const double d = v.double_value();
      // As CEL's reference implementation: the ends of the range are errors too.
      if (std::isnan(d) || d <= -kTwo63 || d >= kTwo63) return Value::Err("int range error: " + v.DebugString());
      return Value::Int(static_cast<std::int64_t>(d));
    }
    case Kind::kString: {
      std::int64_t out = 0;
      if (!ParseWhole(v.string_value(), out)) return Value::Err("cannot convert " + v.DebugString() + " to int");
      return Value::Int(out);
    }
    default: return NoOverload(n, {&v, 1});
  }
}

Value ToUint(const Node& n, const Value& v) {
  switch (v.kind()) {
    case Kind::kUint: return v;
    case Kind::kInt:
      return v.int_value() < 0 ? Value::Err("uint range error: " + v.DebugString())
                               : Value::Uint(static_cast<std::uint64_t>(v.int_value()));
    case Kind::kDouble: {
      const double d = v.double_value();
      if (std::isnan(d) || d < 0 || d >= kTwo64) return Value::Err("uint range error: " + v.DebugString());
      return Value::Uint(static_cast<std::uint64_t>(d));
    }
    case Kind::kString: {
      std::uint64_t out = 0;
      if (!ParseWhole(v.string_value(), out)) return Value::Err("cannot convert " + v.DebugString() + " to uint");
      return Value::Uint(out);
    }
    default: return NoOverload(n, {&v, 1});
  }
}

Value ToDouble(const Node& n, const Value& v) {
  switch (v.kind()) {
    case Kind::kDouble: return v;
    case Kind::kInt: return Value::Double(static_cast<double>(v.int_value()));
    case Kind::kUint: return Value::Double(static_cast<double>(v.uint_value()));
    case Kind::kString: {
      const std::string& s = v.string_value();
      // Decimal and exponent forms, "NaN", "Inf", "+Inf", "-Inf", "Infinity" (as Go's
      // strconv.ParseFloat, which CEL's reference implementation uses); no hex floats.
      std::string lower;
      for (char c : s) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      std::string body = lower;
      double sign = 1;
      if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
        sign = body[0] == '-' ? -1 : 1;
        body.erase(0, 1);
      }
      if (body == "inf" || body == "infinity") return Value::Double(sign * std::numeric_limits<double>::infinity());
      if (body == "nan") return Value::Double(std::numeric_limits<double>::quiet_NaN());
      double out = 0;
      const char* first = s.data();
      if (!s.empty() && s[0] == '+') ++first;
      auto r = std::from_chars(first, s.data() + s.size(), out, std::chars_format::general);
      if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) {
        return Value::Err("cannot convert " + v.DebugString() + " to double");
      }
      return Value::Double(out);
    }
    default: return NoOverload(n, {&v, 1});
  }
}

Value ToString(const Node& n, const Value& v) {
  switch (v.kind()) {
    case Kind::kString: return v;
    case Kind::kInt: return Value::String(std::to_string(v.int_value()));
    case Kind::kUint: return Value::String(std::to_string(v.uint_value()));
    case Kind::kDouble: return Value::String(FormatDouble(v.double_value()));
    case Kind::kBool: return Value::String(v.bool_value() ? "true" : "false");
    case Kind::kBytes:
      if (!ValidUtf8(v.bytes_value())) return Value::Err("invalid UTF-8 in bytes, cannot convert to string");
      return Value::String(v.bytes_value());
    default: return NoOverload(n, {&v, 1});
  }
}

Value ToBool(const Node& n, const Value& v) {
  if (v.is(Kind::kBool)) return v;
  if (!v.is(Kind::kString)) return NoOverload(n, {&v, 1});
  const std::string& s = v.string_value();
  if (s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True") return Value::Bool(true);
  if (s == "0" || s == "f" || s == "F" || s == "false" || s == "FALSE" || s == "False") return Value::Bool(false);
  return Value::Err("cannot convert " + v.DebugString() + " to bool");
}

Value Greatest(const Node& n, std::span<const Value> args) {
  std::span<const Value> xs = args;
  if (args.size() == 1 && args[0].is(Kind::kList)) xs = args[0].list();
  if (xs.empty()) return Value::Err(n.name + "() of an empty list");
  const Value* best = &xs[0];
  for (const Value& x : xs) {
    if (!IsNumber(x)) return NoOverload(n, args);
  }
  for (const Value& x : xs.subspan(1)) {
    const Order o = CompareNumbers(x, *best);
    if (o == Order::kUnordered) {
      if (x.is(Kind::kDouble) && std::isnan(x.double_value())) best = &x;
      continue;
    }
    if (std::isnan(best->is(Kind::kDouble) ? best->double_value() : 0.0)) continue;
    if ((n.op == Op::kGreatest && o == Order::kGreater) || (n.op == Op::kLeast && o == Order::kLess)) best = &x;
  }
  return *best;
}

Value MathUnary(const Node& n, const Value& v) {
  if (n.op == Op::kAbs || n.op == Op::kSign) {
    switch (v.kind()) {
      case Kind::kInt: {
        const std::int64_t x = v.int_value();
        if (n.op == Op::kSign) return Value::Int(x > 0 ? 1 : (x < 0 ? -1 : 0));
        if (x == INT64_MIN) return Overflow();
        return Value::Int(x < 0 ? -x : x);
      }
      case Kind::kUint:
        return n.op == Op::kSign ? Value::Uint(v.uint_value() > 0 ? 1 : 0) : v;
      case Kind::kDouble: {
        const double d = v.double_value();
        if (n.op == Op::kAbs) return Value::Double(std::fabs(d));
        if (std::isnan(d)) return v;
        return Value::Double(d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0));
      }
      default: return NoOverload(n, {&v, 1});
    }
  }
  if (!v.is(Kind::kDouble)) return NoOverload(n, {&v, 1});
  const double d = v.double_value();
  switch (n.op) {
    case Op::kCeil: return Value::Double(std::ceil(d));
    case Op::kFloor: return Value::Double(std::floor(d));
    case Op::kRound: return Value::Double(std::round(d));  // half away from zero
    case Op::kTrunc: return Value::Double(std::trunc(d));
    case Op::kIsNaN: return Value::Bool(std::isnan(d));
    case Op::kIsInf: return Value::Bool(std::isinf(d));
    default: return Value::Bool(std::isfinite(d));
  }
}

// ---- CEL's strings extension (code points, as CEL counts them) ----------------------------

// The byte offset of each code point of valid UTF-8, and s.size() after the last.
std::vector<std::size_t> CodePointOffsets(const std::string& s) {
  std::vector<std::size_t> offs;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) offs.push_back(i);
  }
  offs.push_back(s.size());
  return offs;
}

std::int64_t CodePointIndex(const std::vector<std::size_t>& offs, std::size_t byte) {
  return static_cast<std::int64_t>(std::lower_bound(offs.begin(), offs.end(), byte) - offs.begin());
}

Value RangeError(std::int64_t i) { return Value::Err("index out of range: " + std::to_string(i)); }

// Unicode white space, as Go's unicode.IsSpace (CEL's reference implementation trims it).
bool IsSpace(std::uint32_t cp) {
  switch (cp) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ': case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::uint32_t DecodeAt(const std::string& s, std::size_t i, std::size_t n) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (n == 1) return c;
  std::uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

Value Strings(const Node& n, std::span<const Value> a) {
  std::size_t min = 1, max = 1;
  switch (n.op) {
    case Op::kCharAt: min = max = 2; break;
    case Op::kIndexOf: case Op::kLastIndexOf: case Op::kSplit: case Op::kSubstring: min = 2, max = 3; break;
    case Op::kReplace: min = 3, max = 4; break;
    case Op::kJoin: min = 1, max = 2; break;
    default: break;
  }
  if (a.size() < min || a.size() > max) return NoOverload(n, a);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const bool list_arg = n.op == Op::kJoin && i == 0;
    const bool int_arg = (n.op == Op::kCharAt && i == 1) || (n.op == Op::kSubstring && i >= 1) ||
                         ((n.op == Op::kIndexOf || n.op == Op::kLastIndexOf || n.op == Op::kSplit) && i == 2) ||
                         (n.op == Op::kReplace && i == 3);
    if (list_arg ? !a[i].is(Kind::kList) : (int_arg ? !a[i].is(Kind::kInt) : !a[i].is(Kind::kString))) {
      return NoOverload(n, a);
    }
  }
  if (n.op == Op::kJoin) {
    std::size_t total = 0;
    for (const Value& e : a[0].list()) total += e.is(Kind::kString) ? e.string_value().size() + (a.size() > 1 ? a[1].string_value().size() : 0) : 0;
    if (!Charge(total)) return OverBudget();
    std::string out;
    const std::string sep = a.size() > 1 ? a[1].string_value() : "";
    bool first = true;
    for (const Value& e : a[0].list()) {
      if (!e.is(Kind::kString)) return Value::Err("join: the list holds a " + e.TypeName() + ", not only strings");
      if (!first) out += sep;
      first = false;
      out += e.string_value();
    }
    return Value::String(std::move(out));
  }
  const std::string& s = a[0].string_value();
  // What these build is at most a few times their inputs; replace and split are charged for it.
  if (n.op == Op::kReplace || n.op == Op::kSplit) {
    const std::size_t more = n.op == Op::kReplace ? a[2].string_value().size() : sizeof(Value);
    if (!Charge(s.size() * (1 + more))) return OverBudget();
  } else if (!Charge(s.size())) {
    return OverBudget();
  }
  const std::vector<std::size_t> offs = CodePointOffsets(s);
  const auto count = static_cast<std::int64_t>(offs.size() - 1);
  auto piece = [&](std::int64_t from, std::int64_t to) {
    return s.substr(offs[static_cast<std::size_t>(from)], offs[static_cast<std::size_t>(to)] - offs[static_cast<std::size_t>(from)]);
  };
  switch (n.op) {
    case Op::kCharAt: {
      const std::int64_t i = a[1].int_value();
      if (i < 0 || i > count) return RangeError(i);
      return Value::String(i == count ? "" : piece(i, i + 1));
    }
    case Op::kIndexOf:
    case Op::kLastIndexOf: {
      const std::string& sub = a[1].string_value();
      const bool last = n.op == Op::kLastIndexOf;
      const std::int64_t off = a.size() > 2 ? a[2].int_value() : (last ? count : 0);
      if (off < 0 || off > count) return RangeError(off);
      if (sub.empty()) return Value::Int(off);
      const std::size_t at = offs[static_cast<std::size_t>(off)];
      const std::size_t pos = last ? s.rfind(sub, at) : s.find(sub, at);
      return Value::Int(pos == std::string::npos ? -1 : CodePointIndex(offs, pos));
    }
    case Op::kLowerAscii:
    case Op::kUpperAscii: {
      std::string out = s;
      for (char& c : out) {
        if (n.op == Op::kLowerAscii && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (n.op == Op::kUpperAscii && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      }
      return Value::String(std::move(out));
    }
    case Op::kReplace: {
      const std::string& from = a[1].string_value();
      const std::string& to = a[2].string_value();
      std::int64_t left = a.size() > 3 ? a[3].int_value() : -1;
      std::string out;
      if (from.empty()) {
        // As Go's strings.Replace: `to` before every code point and at the end.
        for (std::int64_t i = 0; i <= count; ++i) {
          if (left != 0) {
            out += to;
            if (left > 0) --left;
          }
          if (i < count) out += piece(i, i + 1);
        }
        return Value::String(std::move(out));
      }
      std::size_t pos = 0;
      while (left != 0) {
        const std::size_t hit = s.find(from, pos);
        if (hit == std::string::npos) break;
        out.append(s, pos, hit - pos).append(to);
        pos = hit + from.size();
        if (left > 0) --left;
      }
      return Value::String(out.append(s, pos, std::string::npos));
    }
    case Op::kSplit: {
      const std::string& sep = a[1].string_value();
      const std::int64_t limit = a.size() > 2 ? a[2].int_value() : -1;
      List out;
      if (limit == 0) return Value::ListOf({});
      if (sep.empty()) {
        for (std::int64_t i = 0; i < count; ++i) {
          if (limit > 0 && static_cast<std::int64_t>(out.size()) == limit - 1) {
            out.push_back(Value::String(piece(i, count)));
            return Value::ListOf(std::move(out));
          }
          out.push_back(Value::String(piece(i, i + 1)));
        }
        return Value::ListOf(std::move(out));
      }
      std::size_t pos = 0;
      while (limit < 0 || static_cast<std::int64_t>(out.size()) < limit - 1) {
        const std::size_t hit = s.find(sep, pos);
        if (hit == std::string::npos) break;
        out.push_back(Value::String(s.substr(pos, hit - pos)));
        pos = hit + sep.size();
      }
      out.push_back(Value::String(s.substr(pos)));
      return Value::ListOf(std::move(out));
    }
    case Op::kSubstring: {
      const std::int64_t from = a[1].int_value();
      const std::int64_t to = a.size() > 2 ? a[2].int_value() : count;
      if (from < 0 || from > count) return RangeError(from);
      if (to < from || to > count) return RangeError(to);
      return Value::String(piece(from, to));
    }
    case Op::kTrim: {
      std::int64_t from = 0, to = count;
      auto cp = [&](std::int64_t i) {
        const std::size_t at = offs[static_cast<std::size_t>(i)];
        return DecodeAt(s, at, offs[static_cast<std::size_t>(i) + 1] - at);
      };
      while (from < to && IsSpace(cp(from))) ++from;
      while (to > from && IsSpace(cp(to - 1))) --to;
      return Value::String(piece(from, to));
    }
    case Op::kReverse: {
      std::string out;
      for (std::int64_t i = count; i > 0; --i) out += piece(i - 1, i);
      return Value::String(std::move(out));
    }
    default: return NoOverload(n, a);
  }
}

Value Bits(const Node& n, std::span<const Value> a) {
  if (n.op == Op::kBitNot) {
    if (a[0].is(Kind::kInt)) return Value::Int(~a[0].int_value());
    if (a[0].is(Kind::kUint)) return Value::Uint(~a[0].uint_value());
    return NoOverload(n, a);
  }
  if (n.op == Op::kShiftLeft || n.op == Op::kShiftRight) {
    if (!a[1].is(Kind::kInt) || !(a[0].is(Kind::kInt) || a[0].is(Kind::kUint))) return NoOverload(n, a);
    const std::int64_t by = a[1].int_value();
    if (by < 0) return Value::Err("math.bitShift: negative offset " + std::to_string(by));
    // Logical shifts on the 64 bits, for int too (as CEL's math extension says).
    const std::uint64_t bits = a[0].is(Kind::kInt) ? static_cast<std::uint64_t>(a[0].int_value()) : a[0].uint_value();
    const std::uint64_t r = by > 63 ? 0 : (n.op == Op::kShiftLeft ? bits << by : bits >> by);
    return a[0].is(Kind::kInt) ? Value::Int(static_cast<std::int64_t>(r)) : Value::Uint(r);
  }
  if (a[0].kind() != a[1].kind() || !(a[0].is(Kind::kInt) || a[0].is(Kind::kUint))) return NoOverload(n, a);
  const bool i = a[0].is(Kind::kInt);
  const std::uint64_t x = i ? static_cast<std::uint64_t>(a[0].int_value()) : a[0].uint_value();
  const std::uint64_t y = i ? static_cast<std::uint64_t>(a[1].int_value()) : a[1].uint_value();
  const std::uint64_t r = n.op == Op::kBitAnd ? (x & y) : (n.op == Op::kBitOr ? (x | y) : (x ^ y));
  return i ? Value::Int(static_cast<std::int64_t>(r)) : Value::Uint(r);
}

Value Call(const Node& n, std::span<const Value> a) {
  const std::size_t argc = a.size();
  auto need = [&](std::size_t k) { return argc == k; };
  switch (n.op) {
    case Op::kNot:
      if (need(1) && a[0].is(Kind::kBool)) return Value::Bool(!a[0].bool_value());
      break;
    case Op::kEq:
      if (need(2)) return Value::Bool(Equal(a[0], a[1]));
      break;
    case Op::kNe:
      if (need(2)) return Value::Bool(!Equal(a[0], a[1]));
      break;
    case Op::kLt:
    case Op::kLe:
    case Op::kGt:
    case Op::kGe:
      if (need(2)) return Ordering(n, a[0], a[1]);
      break;
    case Op::kIn:
      if (need(2)) return In(n, a[0], a[1]);
      break;
    case Op::kAdd:
    case Op::kSub:
    case Op::kMul:
    case Op::kDiv:
    case Op::kMod:
      if (need(2)) return Arith(n, a[0], a[1]);
      break;
    case Op::kNeg:
      if (need(1) && a[0].is(Kind::kInt)) {
        return a[0].int_value() == INT64_MIN ? Overflow() : Value::Int(-a[0].int_value());
      }
      if (need(1) && a[0].is(Kind::kDouble)) return Value::Double(-a[0].double_value());
      break;
    case Op::kIndex:
      if (need(2)) return Index(n, a[0], a[1]);
      break;
    case Op::kSize:
      if (!need(1)) break;
      switch (a[0].kind()) {
        case Kind::kString: return Value::Int(CodePoints(a[0].string_value()));
        case Kind::kBytes: return Value::Int(static_cast<std::int64_t>(a[0].bytes_value().size()));
        case Kind::kList: return Value::Int(static_cast<std::int64_t>(a[0].list().size()));
        case Kind::kMap: return Value::Int(static_cast<std::int64_t>(a[0].map().size()));
        default: break;
      }
      break;
    case Op::kContains:
    case Op::kStartsWith:
    case Op::kEndsWith:
    case Op::kMatches: {
      if (!need(2) || !a[0].is(Kind::kString) || !a[1].is(Kind::kString)) break;
      const std::string& s = a[0].string_value();
      const std::string& t = a[1].string_value();
      if (n.op == Op::kContains) return Value::Bool(s.find(t) != std::string::npos);
      if (n.op == Op::kStartsWith) return Value::Bool(s.rfind(t, 0) == 0);
      if (n.op == Op::kEndsWith) return Value::Bool(s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0);
      if (n.compiled) return Value::Bool(RE2::PartialMatch(s, *static_cast<const RE2*>(n.compiled.get())));
      // A pattern known only now: compiling it costs about this much, from the budget.
      if (!Charge(4096 + 64 * t.size())) return OverBudget();
      RE2 re(t, PatternOptions());
      if (!re.ok()) return Value::Err("invalid regular expression: " + re.error());
      return Value::Bool(RE2::PartialMatch(s, re));
    }
    case Op::kToInt:
      if (need(1)) return ToInt(n, a[0]);
      break;
    case Op::kToUint:
      if (need(1)) return ToUint(n, a[0]);
      break;
    case Op::kToDouble:
      if (need(1)) return ToDouble(n, a[0]);
      break;
    case Op::kToString:
      if (need(1)) return ToString(n, a[0]);
      break;
    case Op::kToBool:
      if (need(1)) return ToBool(n, a[0]);
      break;
    case Op::kToBytes:
      if (need(1) && a[0].is(Kind::kBytes)) return a[0];
      if (need(1) && a[0].is(Kind::kString)) return Value::BytesOf(a[0].string_value());
      break;
    case Op::kToDyn:
      if (need(1)) return a[0];
      break;
    case Op::kTypeOf:
      if (need(1)) return Value::TypeOf(a[0].TypeName());
      break;
    case Op::kGreatest:
    case Op::kLeast:
      if (argc >= 1) return Greatest(n, a);
      break;
    case Op::kCeil:
    case Op::kFloor:
    case Op::kRound:
    case Op::kTrunc:
    case Op::kAbs:
    case Op::kSign:
    case Op::kIsNaN:
    case Op::kIsInf:
    case Op::kIsFinite:
      if (need(1)) return MathUnary(n, a[0]);
      break;
    case Op::kBitAnd:
    case Op::kBitOr:
    case Op::kBitXor:
    case Op::kShiftLeft:
    case Op::kShiftRight:
      if (need(2)) return Bits(n, a);
      break;
    case Op::kBitNot:
      if (need(1)) return Bits(n, a);
      break;
    case Op::kCharAt:
    case Op::kIndexOf:
    case Op::kLastIndexOf:
    case Op::kLowerAscii:
    case Op::kUpperAscii:
    case Op::kReplace:
    case Op::kSplit:
    case Op::kSubstring:
    case Op::kTrim:
    case Op::kJoin:
    case Op::kReverse:
      if (argc >= 1 && argc <= 4) return Strings(n, a);
      break;
    default: break;
  }
  return NoOverload(n, a);
}

Value MakeMap(const Node& n, std::span<const Value> slots) {
  MapEntries entries;
  entries.reserve(n.args.size() / 2);
  for (std::size_t i = 0; i + 1 < n.args.size(); i += 2) {
    Value k = Evaluate(*n.args[i], slots);
    if (k.is_error()) return k;
    Value v = Evaluate(*n.args[i + 1], slots);
    if (v.is_error()) return v;
    if (!k.is(Kind::kInt) && !k.is(Kind::kUint) && !k.is(Kind::kBool) && !k.is(Kind::kString)) {
      return Value::Err("unsupported map key type: " + k.TypeName());
    }
    for (const auto& e : entries) {
      if (Equal(e.first, k)) return Value::Err("Failed with repeated key: " + k.DebugString());
    }
    entries.emplace_back(std::move(k), std::move(v));
  }
  return Value::MapOf(std::move(entries));
}

}  // namespace

void ResetEvalBudget() { budget_left = kEvalBudgetBytes; }

Value Evaluate(const Node& n, std::span<const Value> slots) {
  switch (n.kind) {
    case NodeKind::kLiteral: return n.literal;
    case NodeKind::kIdent:
      return n.slot >= 0 && static_cast<std::size_t>(n.slot) < slots.size() ? slots[static_cast<std::size_t>(n.slot)]
                                                                              : Value::Err("no value for " + n.name);
    case NodeKind::kSelect: {
      Value target = Evaluate(*n.args[0], slots);
      if (target.is_error()) return target;
      if (!target.is(Kind::kMap)) {
        return Value::Err("type '" + target.TypeName() + "' does not support field selection");
      }
      const Value* v = target.Find(Value::String(n.name));
      if (n.test_only) return Value::Bool(v != nullptr);
      return v != nullptr ? *v : Value::Err("no such key: " + n.name);
    }
    case NodeKind::kList: {
      List out;
      out.reserve(n.args.size());
      for (const auto& e : n.args) {
        Value v = Evaluate(*e, slots);
        if (v.is_error()) return v;
        out.push_back(std::move(v));
      }
      return Value::ListOf(std::move(out));
    }
    case NodeKind::kMap: return MakeMap(n, slots);
    case NodeKind::kCall: break;
  }
  switch (n.op) {
    case Op::kAnd:
    case Op::kOr: {
      // Either side decides when it is the absorbing value (false for &&, true for ||), even
      // when the other is an error; otherwise an error wins, then a non-bool.
      const bool absorbing = n.op == Op::kOr;
      Value a = Evaluate(*n.args[0], slots);
      if (a.is(Kind::kBool) && a.bool_value() == absorbing) return a;
      Value b = Evaluate(*n.args[1], slots);
      if (b.is(Kind::kBool) && b.bool_value() == absorbing) return b;
      if (a.is_error()) return a;
      if (b.is_error()) return b;
      if (a.is(Kind::kBool) && b.is(Kind::kBool)) return Value::Bool(!absorbing);
      return NoOverload(n, a, b);
    }
    case Op::kCond: {
      Value c = Evaluate(*n.args[0], slots);
      if (c.is_error()) return c;
      if (!c.is(Kind::kBool)) return NoOverload(n, {&c, 1});
      return Evaluate(*n.args[c.bool_value() ? 1 : 2], slots);
    }
    default: break;
  }
  Value small[3];
  std::vector<Value> big;
  Value* args = small;
  if (n.args.size() > 3) {
    big.resize(n.args.size());
    args = big.data();
  }
  for (std::size_t i = 0; i < n.args.size(); ++i) {
    args[i] = Evaluate(*n.args[i], slots);
    if (args[i].is_error()) return args[i];
  }
  return Call(n, {args, n.args.size()});
}

}  // namespace strata::rules
