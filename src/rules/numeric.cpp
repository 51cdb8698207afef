#include "rules/numeric.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace strata::rules {

namespace {

template <typename T>
Order Cmp(T a, T b) {
  return a < b ? Order::kLess : (b < a ? Order::kGreater : Order::kEqual);
}

Order Flip(Order o) {
  if (o == Order::kLess) return Order::kGreater;
  if (o == Order::kGreater) return Order::kLess;
  return o;
}

// An int or a uint meets a double as a double (as CEL's reference implementation and its
// conformance suite have it: INT64_MAX is not below 2^63.0, since it converts to it).
Order IntDouble(std::int64_t i, double d) {
  if (std::isnan(d)) return Order::kUnordered;
  return Cmp(static_cast<double>(i), d);
}

Order UintDouble(std::uint64_t u, double d) {
  if (std::isnan(d)) return Order::kUnordered;
  return Cmp(static_cast<double>(u), d);
}

Order IntUint(std::int64_t i, std::uint64_t u) {
  if (i < 0) return Order::kLess;
  return Cmp(static_cast<std::uint64_t>(i), u);
}

}  // namespace

Order CompareNumbers(const Value& a, const Value& b) {
  switch (a.kind()) {
    case Kind::kInt:
      if (b.is(Kind::kInt)) return Cmp(a.int_value(), b.int_value());
      if (b.is(Kind::kUint)) return IntUint(a.int_value(), b.uint_value());
      return IntDouble(a.int_value(), b.double_value());
    case Kind::kUint:
      if (b.is(Kind::kUint)) return Cmp(a.uint_value(), b.uint_value());
      if (b.is(Kind::kInt)) return Flip(IntUint(b.int_value(), a.uint_value()));
      return UintDouble(a.uint_value(), b.double_value());
    default: {
      const double d = a.double_value();
      if (b.is(Kind::kInt)) return Flip(IntDouble(b.int_value(), d));
      if (b.is(Kind::kUint)) return Flip(UintDouble(b.uint_value(), d));
      const double e = b.double_value();
      if (std::isnan(d) || std::isnan(e)) return Order::kUnordered;
      return Cmp(d, e);
    }
  }
}

std::string FormatDouble(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  if (d == 0) return std::signbit(d) ? "-0" : "0";
  // The shortest digits that read back to d, as d.ddde[+-]x; then the layout of Go's
  // strconv.FormatFloat(d, 'g', -1, 64): plain when the exponent is in [-4, 6), else
  // exponent form with at least two exponent digits.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  const std::size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string sign;
  std::string digits;
  for (std::size_t i = 0; i < e; ++i) {
    if (s[i] == '-') sign = "-";
    else if (s[i] != '.') digits.push_back(s[i]);
  }
  if (exp < -4 || exp >= 6) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    const std::string x = std::to_string(std::abs(exp));
    if (x.size() < 2) out += "0";
    return out + x;
  }
  if (exp < 0) return sign + "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
  const auto point = static_cast<std::size_t>(exp) + 1;
  if (digits.size() <= point) return sign + digits + std::string(point - digits.size(), '0');
  return sign + digits.substr(0, point) + "." + digits.substr(point);
}

}  // namespace strata::rules
