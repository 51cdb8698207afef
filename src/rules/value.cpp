#include <strata/rules/value.h>

#include <cmath>
#include <cstdio>

#include "rules/numeric.h"

namespace strata::rules {

Type Type::List(Type elem) { return Type{Tag::kList, std::make_shared<const std::vector<Type>>(std::vector{elem})}; }

Type Type::Map(Type key, Type value) {
  return Type{Tag::kMap, std::make_shared<const std::vector<Type>>(std::vector{key, value})};
}

std::string Type::Name() const {
  switch (tag) {
    case Tag::kDyn: return "dyn";
    case Tag::kNull: return "null_type";
    case Tag::kBool: return "bool";
    case Tag::kInt: return "int";
    case Tag::kUint: return "uint";
    case Tag::kDouble: return "double";
    case Tag::kString: return "string";
    case Tag::kBytes: return "bytes";
    case Tag::kList: return params ? "list(" + elem().Name() + ")" : "list(dyn)";
    case Tag::kMap: return params ? "map(" + key().Name() + ", " + value().Name() + ")" : "map(dyn, dyn)";
    case Tag::kType: return "type";
    case Tag::kError: return "error";
  }
  return "dyn";
}

bool operator==(const Type& a, const Type& b) {
  if (a.tag != b.tag) return false;
  if (a.tag != Type::Tag::kList && a.tag != Type::Tag::kMap) return true;
  const Type dyn;
  const std::size_t n = a.tag == Type::Tag::kList ? 1 : 2;
  for (std::size_t i = 0; i < n; ++i) {
    const Type& x = a.params ? (*a.params)[i] : dyn;
    const Type& y = b.params ? (*b.params)[i] : dyn;
    if (!(x == y)) return false;
  }
  return true;
}

namespace {

bool IsNumber(const Value& v) { return v.is(Kind::kInt) || v.is(Kind::kUint) || v.is(Kind::kDouble); }

}  // namespace

const Value* Value::Find(const Value& key) const {
  if (!is(Kind::kMap)) return nullptr;
  for (const auto& [k, v] : map()) {
    if (k.kind() == key.kind() || (IsNumber(k) && IsNumber(key))) {
      if (Equal(k, key)) return &v;
    }
  }
  return nullptr;
}

bool Equal(const Value& a, const Value& b) {
  if (IsNumber(a) && IsNumber(b)) return CompareNumbers(a, b) == Order::kEqual;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kNull: return true;
    case Kind::kBool: return a.bool_value() == b.bool_value();
    case Kind::kString: return a.string_value() == b.string_value();
    case Kind::kBytes: return a.bytes_value() == b.bytes_value();
    case Kind::kType: return a.type_name() == b.type_name();
    case Kind::kList: {
      const List& x = a.list();
      const List& y = b.list();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!Equal(x[i], y[i])) return false;
      }
      return true;
    }
    case Kind::kMap: {
      if (a.map().size() != b.map().size()) return false;
      for (const auto& [k, v] : a.map()) {
        const Value* other = b.Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    default: return false;  // numbers are handled above; errors equal nothing
  }
}

std::string Value::TypeName() const {
  switch (kind()) {
    case Kind::kNull: return "null_type";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kUint: return "uint";
    case Kind::kDouble: return "double";
    case Kind::kString: return "string";
    case Kind::kBytes: return "bytes";
    case Kind::kList: return "list";
    case Kind::kMap: return "map";
    case Kind::kType: return "type";
    case Kind::kError: return "error";
  }
  return "error";
}

namespace {

void Quote(const std::string& s, char prefix, std::string& out) {
  if (prefix != 0) out.push_back(prefix);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || (prefix == 'b' && c >= 0x7f)) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

void Debug(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Kind::kNull: out += "null"; return;
    case Kind::kBool: out += v.bool_value() ? "true" : "false"; return;
    case Kind::kInt: out += std::to_string(v.int_value()); return;
    case Kind::kUint: out += std::to_string(v.uint_value()) + "u"; return;
    case Kind::kDouble: {
      const std::string s = FormatDouble(v.double_value());
      out += s;
      if (std::isfinite(v.double_value()) && s.find_first_of(".e") == std::string::npos) out += ".0";
      return;
    }
    case Kind::kString: Quote(v.string_value(), 0, out); return;
    case Kind::kBytes: Quote(v.bytes_value(), 'b', out); return;
    case Kind::kType: out += v.type_name(); return;
    case Kind::kError: out += "error(" + v.error() + ")"; return;
    case Kind::kList: {
      out.push_back('[');
      bool first = true;
      for (const Value& e : v.list()) {
        if (!first) out += ", ";
        first = false;
        Debug(e, out);
      }
      out.push_back(']');
      return;
    }
    case Kind::kMap: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.map()) {
        if (!first) out += ", ";
        first = false;
        Debug(k, out);
        out += ": ";
        Debug(e, out);
      }
      out.push_back('}');
      return;
    }
  }
}

}  // namespace

std::string Value::DebugString() const {
  std::string out;
  Debug(*this, out);
  return out;
}

}  // namespace strata::rules
