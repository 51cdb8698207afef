// Values and types of the rules' expression language (docs/rules.md), a subset of Google's
// CEL: what a reading's keys, a device's attributes and every subexpression evaluate to.
//
// A Value is small and cheap to copy: scalars inline, strings by value (short ones without an
// allocation), lists and maps shared and immutable. An evaluation error is a Value too, so
// that `&&` and `||` can absorb it as CEL says (`true || error` is true).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace strata::rules {

// The kinds of value, and the primitive types of the checker.
enum class Kind : std::uint8_t { kNull, kBool, kInt, kUint, kDouble, kString, kBytes, kList, kMap, kType, kError };

// A static type: a kind, with element types for lists and maps. kDyn is "known only when
// evaluated" (a reading's key, whose type the device decides).
struct Type {
  enum class Tag : std::uint8_t { kDyn, kNull, kBool, kInt, kUint, kDouble, kString, kBytes, kList, kMap, kType, kError };
  Tag tag = Tag::kDyn;
  std::shared_ptr<const std::vector<Type>> params;  // list: {elem}; map: {key, value}

  static Type Dyn() { return {}; }
  static Type Of(Tag tag) { return Type{tag, nullptr}; }
  static Type List(Type elem);
  static Type Map(Type key, Type value);
  const Type& elem() const { return (*params)[0]; }
  const Type& key() const { return (*params)[0]; }
  const Type& value() const { return (*params)[1]; }
  bool is(Tag t) const { return tag == t; }
  // CEL's spelling: int, list(string), map(string, dyn), ...
  std::string Name() const;
  friend bool operator==(const Type& a, const Type& b);
};

struct Bytes {
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};
// A type as a value: what `type(x)` returns and what `int` or `string` name.
struct TypeValue {
  std::string name;
  friend bool operator==(const TypeValue&, const TypeValue&) = default;
};
struct Error {
  std::string message;
};

class Value;
using List = std::vector<Value>;
using MapEntries = std::vector<std::pair<Value, Value>>;

class Value {
 public:
  Value() = default;  // null
  static Value Null() { return {}; }
  static Value Bool(bool v) { return Value(Rep(v)); }
  static Value Int(std::int64_t v) { return Value(Rep(v)); }
  static Value Uint(std::uint64_t v) { return Value(Rep(v)); }
  static Value Double(double v) { return Value(Rep(v)); }
  static Value String(std::string v) { return Value(Rep(std::move(v))); }
  static Value BytesOf(std::string v) { return Value(Rep(rules::Bytes{std::move(v)})); }
  static Value ListOf(List v) { return Value(Rep(std::make_shared<const List>(std::move(v)))); }
  // Keys must be null-free of duplicates (the caller checks; see MakeMap in eval).
  static Value MapOf(MapEntries v) { return Value(Rep(std::make_shared<const MapEntries>(std::move(v)))); }
  static Value TypeOf(std::string name) { return Value(Rep(TypeValue{std::move(name)})); }
  static Value Err(std::string message) { return Value(Rep(Error{std::move(message)})); }

  Kind kind() const { return static_cast<Kind>(rep_.index()); }
  bool is(Kind k) const { return kind() == k; }
  bool is_error() const { return kind() == Kind::kError; }

  bool bool_value() const { return std::get<bool>(rep_); }
  std::int64_t int_value() const { return std::get<std::int64_t>(rep_); }
  std::uint64_t uint_value() const { return std::get<std::uint64_t>(rep_); }
  double double_value() const { return std::get<double>(rep_); }
  const std::string& string_value() const { return std::get<std::string>(rep_); }
  const std::string& bytes_value() const { return std::get<rules::Bytes>(rep_).data; }
  const List& list() const { return *std::get<std::shared_ptr<const List>>(rep_); }
  const MapEntries& map() const { return *std::get<std::shared_ptr<const MapEntries>>(rep_); }
  const std::string& type_name() const { return std::get<TypeValue>(rep_).name; }
  const std::string& error() const { return std::get<Error>(rep_).message; }

  // The entry for `key` (numeric keys compare by value across int, uint and double, as CEL
  // says), or nullptr.
  const Value* Find(const Value& key) const;
  // CEL's equality: heterogeneous numbers compare by value, NaN equals nothing, lists and
  // maps element by element. Both sides must not be errors.
  friend bool Equal(const Value& a, const Value& b);
  // The CEL name of this value's type: "int", "list", "null_type", ...
  std::string TypeName() const;
  // For logs and tests: CEL literal syntax where there is one.
  std::string DebugString() const;

 private:
  using Rep = std::variant<std::monostate, bool, std::int64_t, std::uint64_t, double, std::string, rules::Bytes,
                           std::shared_ptr<const List>, std::shared_ptr<const MapEntries>, TypeValue, Error>;
  explicit Value(Rep rep) : rep_(std::move(rep)) {}
  Rep rep_;
};

}  // namespace strata::rules
