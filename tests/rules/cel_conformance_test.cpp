// Google's CEL conformance suite against strata::rules: every case the pinned
// @bufbuild/cel-spec ships (exported to JSON by conformance/export.js, run by
// conformance/run.sh, which sets STRATA_CEL_CONFORMANCE_JSON and STRATA_CEL_KNOWN_FAILURES).
//
// Each case is compiled (Program::Compile, or CompileUnchecked when the case disables the
// checker) with its declarations, evaluated with its bindings, and judged exactly: an int 1 is
// not a uint 1 nor a double 1.0, doubles compare bit for bit (any NaN matches a NaN), maps
// compare regardless of order. A case is
//   PASS           the expected value, or an expected error (at compile or at run time);
//   OUT_OF_SUBSET  its suite is not in kInScopeSuites, or the compile said UNIMPLEMENTED, or
//                  the case needs what the runner cannot give (a message value, a wrapper
//                  declaration, ...: see export.js);
//   FAIL           everything else.
// Every FAIL must be listed in conformance/known_failures.txt with its reason, and every
// listed case must still FAIL. When a case states its type (or cel-go's checker deduced one),
// the checked program's result_type() is compared with it too: counted, not judged.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include <strata/rules/expr.h>
#include <strata/rules/value.h>

namespace strata::rules {
namespace {

using nlohmann::json;

// The conformance files (suites) whose features the rules language has. The others are
// counted, every case OUT_OF_SUBSET: macros and macros2 (comprehensions), timestamps,
// optionals, proto2/proto3/wrappers/enums/dynamic (messages), the *_ext extensions,
// namespace (containers), type_deductions (generic functions), unknowns.
const std::set<std::string, std::less<>> kInScopeSuites = {
    "basic", "comparisons", "conversions", "fields",  "fp_math",  "integer_math",
    "lists", "logic",       "math_ext",    "parse",   "plumbing", "string",   "string_ext",
};

// At least this many in-scope cases must PASS: guards against the runner silently judging
// nothing (an empty export, every case OUT_OF_SUBSET through a bug here). Raise it as the
// library grows.
constexpr int kMinInScopePasses = 1240;

// ---------------------------------------------------------------------------------------
// CEL type strings (export.js writes them): dyn, null_type, bool, int, uint, double, string,
// bytes, type, list(T), map(K, V). Anything else is outside the subset: nullopt.

class TypeParser {
 public:
  explicit TypeParser(std::string_view text) : text_(text) {}

  std::optional<Type> ParseAll() {
    std::optional<Type> t = Parse(0);
    SkipSpace();
    if (!t || pos_ != text_.size()) return std::nullopt;
    return t;
  }

 private:
  std::optional<Type> Parse(int depth) {
    if (depth > 32) return std::nullopt;
    const std::string_view word = Word();
    if (word == "list") {
      if (!Eat('(')) return std::nullopt;
      std::optional<Type> elem = Parse(depth + 1);
      if (!elem || !Eat(')')) return std::nullopt;
      return Type::List(*elem);
    }
    if (word == "map") {
      if (!Eat('(')) return std::nullopt;
      std::optional<Type> key = Parse(depth + 1);
      if (!key || !Eat(',')) return std::nullopt;
      std::optional<Type> value = Parse(depth + 1);
      if (!value || !Eat(')')) return std::nullopt;
      return Type::Map(*key, *value);
    }
    static const std::pair<std::string_view, Type::Tag> kSimple[] = {
        {"dyn", Type::Tag::kDyn},       {"null_type", Type::Tag::kNull}, {"bool", Type::Tag::kBool},
        {"int", Type::Tag::kInt},       {"uint", Type::Tag::kUint},      {"double", Type::Tag::kDouble},
        {"string", Type::Tag::kString}, {"bytes", Type::Tag::kBytes},    {"type", Type::Tag::kType},
    };
    for (const auto& entry : kSimple) {
      if (word == entry.first) return Type::Of(entry.second);
    }
    return std::nullopt;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  std::string_view Word() {
    SkipSpace();
    const std::size_t begin = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) break;
      ++pos_;
    }
    return text_.substr(begin, pos_ - begin);
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

std::optional<Type> ParseType(std::string_view text) { return TypeParser(text).ParseAll(); }

// The runner's own spelling of a Type (not Type::Name(), which is under test elsewhere).
std::string Spell(const Type& t) {
  switch (t.tag) {
    case Type::Tag::kDyn: return "dyn";
    case Type::Tag::kNull: return "null_type";
    case Type::Tag::kBool: return "bool";
    case Type::Tag::kInt: return "int";
    case Type::Tag::kUint: return "uint";
    case Type::Tag::kDouble: return "double";
    case Type::Tag::kString: return "string";
    case Type::Tag::kBytes: return "bytes";
    case Type::Tag::kType: return "type";
    case Type::Tag::kError: return "error";
    case Type::Tag::kList: return t.params ? "list(" + Spell(t.elem()) + ")" : "list(?)";
    case Type::Tag::kMap: return t.params ? "map(" + Spell(t.key()) + ", " + Spell(t.value()) + ")" : "map(?)";
  }
  return "?";
}

// Does the checker's type agree with the expected one? Exact names, except that strata's
// type of types has no parameter: "type" agrees with cel-go's "type(int)".
bool TypesAgree(const std::string& got, const std::string& want) {
  if (got == want) return true;
  return got == "type" && want.rfind("type(", 0) == 0;
}

// ---------------------------------------------------------------------------------------
// Values in export.js's shape: {"null":true} {"bool":b} {"int":"-5"} {"uint":"5"}
// {"double":1.5|"NaN"|"Infinity"|"-Infinity"|"-0"} {"string":s} {"bytes_hex":"00ff"}
// {"list":[V...]} {"map":[[K,V]...]} {"type":"int"}; {"unsupported":"why"} is none.

template <typename Int>
std::optional<Int> ParseInteger(const std::string& s) {
  Int v{};
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || ptr != end || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::string> DecodeHex(const std::string& hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// The value `j` describes, or nullopt with the reason in *why.
std::optional<Value> ValueFromJson(const json& j, std::string* why) {
  if (!j.is_object() || j.size() != 1) {
    *why = "malformed value " + j.dump();
    return std::nullopt;
  }
  const auto member = j.begin();
  const std::string& key = member.key();
  const json& x = member.value();
  if (key == "unsupported") {
    *why = x.is_string() ? x.get<std::string>() : x.dump();
    return std::nullopt;
  }
  if (key == "null") return Value::Null();
  if (key == "bool" && x.is_boolean()) return Value::Bool(x.get<bool>());
  if (key == "int" && x.is_string()) {
    if (auto v = ParseInteger<std::int64_t>(x.get<std::string>())) return Value::Int(*v);
  }
  if (key == "uint" && x.is_string()) {
    if (auto v = ParseInteger<std::uint64_t>(x.get<std::string>())) return Value::Uint(*v);
  }
  if (key == "double") {
    if (x.is_number()) return Value::Double(x.get<double>());
    if (x.is_string()) {
      const std::string s = x.get<std::string>();
      if (s == "NaN") return Value::Double(std::numeric_limits<double>::quiet_NaN());
      if (s == "Infinity") return Value::Double(std::numeric_limits<double>::infinity());
      if (s == "-Infinity") return Value::Double(-std::numeric_limits<double>::infinity());
      if (s == "-0") return Value::Double(-0.0);
    }
  }
  if (key == "string" && x.is_string()) return Value::String(x.get<std::string>());
  if (key == "bytes_hex" && x.is_string()) {
    if (auto bytes = DecodeHex(x.get<std::string>())) return Value::BytesOf(std::move(*bytes));
  }
  if (key == "type" && x.is_string()) return Value::TypeOf(x.get<std::string>());
  if (key == "list" && x.is_array()) {
    List list;
    for (const json& e : x) {
      std::optional<Value> v = ValueFromJson(e, why);
      if (!v) return std::nullopt;
      list.push_back(std::move(*v));
    }
    return Value::ListOf(std::move(list));
  }
  if (key == "map" && x.is_array()) {
    MapEntries entries;
    for (const json& e : x) {
      if (!e.is_array() || e.size() != 2) {
        *why = "malformed map entry " + e.dump();
        return std::nullopt;
      }
      std::optional<Value> k = ValueFromJson(e[0], why);
      if (!k) return std::nullopt;
      std::optional<Value> v = ValueFromJson(e[1], why);
      if (!v) return std::nullopt;
      entries.emplace_back(std::move(*k), std::move(*v));
    }
    return Value::MapOf(std::move(entries));
  }
  *why = "malformed value " + j.dump();
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// The exact comparison: kinds strictly (int 1, uint 1 and double 1.0 all differ), doubles bit
// for bit or both NaN (so 0.0 is not -0.0), lists element by element, maps as sets of entries,
// type values by name, and any error matches an error.

bool SameValue(const Value& got, const Value& want);

bool SameDouble(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  std::uint64_t x = 0;
  std::uint64_t y = 0;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  return x == y;
}

bool SameMap(const MapEntries& got, const MapEntries& want) {
  if (got.size() != want.size()) return false;
  std::vector<bool> used(got.size(), false);
  for (const auto& entry : want) {
    bool found = false;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (used[i] || !SameValue(got[i].first, entry.first)) continue;
      if (!SameValue(got[i].second, entry.second)) return false;
      used[i] = true;
      found = true;
      break;
    }
    if (!found) return false;
  }
  return true;
}

bool SameValue(const Value& got, const Value& want) {
  if (got.kind() != want.kind()) return false;
  switch (want.kind()) {
    case Kind::kNull: return true;
    case Kind::kBool: return got.bool_value() == want.bool_value();
    case Kind::kInt: return got.int_value() == want.int_value();
    case Kind::kUint: return got.uint_value() == want.uint_value();
    case Kind::kDouble: return SameDouble(got.double_value(), want.double_value());
    case Kind::kString: return got.string_value() == want.string_value();
    case Kind::kBytes: return got.bytes_value() == want.bytes_value();
    case Kind::kType: return got.type_name() == want.type_name();
    case Kind::kError: return true;
    case Kind::kList: {
      const List& a = got.list();
      const List& b = want.list();
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!SameValue(a[i], b[i])) return false;
      }
      return true;
    }
    case Kind::kMap: return SameMap(got.map(), want.map());
  }
  return false;
}

// The runner's own rendering of a value, kinds visible (not DebugString, which is under test
// elsewhere): 1, 1u, 1.0, -0.0, "s", b"\xff", <type int>, error(...).
std::string Describe(const Value& v) {
  switch (v.kind()) {
    case Kind::kNull: return "null";
    case Kind::kBool: return v.bool_value() ? "true" : "false";
    case Kind::kInt: return std::to_string(v.int_value());
    case Kind::kUint: return std::to_string(v.uint_value()) + "u";
    case Kind::kDouble: {
      const double d = v.double_value();
      if (std::isnan(d)) return "double(NaN)";
      if (std::isinf(d)) return d > 0 ? "double(+Inf)" : "double(-Inf)";
      char buf[64];
      const auto result = std::to_chars(buf, buf + sizeof buf, d);  // the shortest exact form
      std::string s(buf, result.ptr);
      if (s.find_first_of(".e") == std::string::npos) s += ".0";
      return s;
    }
    case Kind::kString: return json(v.string_value()).dump(-1, ' ', false, json::error_handler_t::replace);
    case Kind::kBytes: {
      std::string s = "b\"";
      for (unsigned char c : v.bytes_value()) {
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
          s.push_back(static_cast<char>(c));
        } else {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          s += buf;
        }
      }
      return s + "\"";
    }
    case Kind::kType: return "<type " + v.type_name() + ">";
    case Kind::kError: return "error(" + v.error() + ")";
    case Kind::kList: {
      std::string s = "[";
      for (std::size_t i = 0; i < v.list().size(); ++i) s += (i ? ", " : "") + Describe(v.list()[i]);
      return s + "]";
    }
    case Kind::kMap: {
      std::string s = "{";
      for (std::size_t i = 0; i < v.map().size(); ++i) {
        s += (i ? ", " : "") + Describe(v.map()[i].first) + ": " + Describe(v.map()[i].second);
      }
      return s + "}";
    }
  }
  return "?";
}

// An expression on one line, for the report.
std::string OneLine(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// known_failures.txt: one `suite/section/name` per line; `#` starts a comment (a whole line,
// or after the name, with the reason).

struct KnownFailures {
  std::map<std::string, int> line_of;  // case -> line number
  std::vector<std::string> problems;   // duplicates
};

KnownFailures ParseKnownFailures(std::istream& in) {
  KnownFailures known;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const std::size_t hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    const std::size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos) continue;
    const std::size_t end = line.find_last_not_of(" \t\r");
    const std::string key = line.substr(begin, end - begin + 1);
    if (!known.line_of.emplace(key, number).second) {
      known.problems.push_back("line " + std::to_string(number) + ": " + key + " is listed twice");
    }
  }
  return known;
}

// ---------------------------------------------------------------------------------------
// One case.

enum class Verdict { kPass, kFail, kOutOfSubset };

struct Outcome {
  Verdict verdict = Verdict::kFail;
  std::string detail;                // FAIL: "got X, want Y"; OUT_OF_SUBSET: the reason
  std::optional<bool> types_agree;   // when checked and a type was expected
  std::string got_type;
};

Outcome Out(std::string why) { return {Verdict::kOutOfSubset, std::move(why), std::nullopt, {}}; }
Outcome Fail(std::string what) { return {Verdict::kFail, std::move(what), std::nullopt, {}}; }

std::string WantText(const json& expect) {
  if (expect.contains("error")) return "error(" + expect.value("message", std::string()) + ")";
  if (expect.contains("type_only")) return "a checked program (check_only)";
  std::string why;
  if (auto v = ValueFromJson(expect.at("value"), &why)) return Describe(*v);
  return why;
}

Outcome RunCase(const json& c) {
  const std::string suite = c.at("suite").get<std::string>();
  if (!kInScopeSuites.contains(suite)) return Out("suite out of subset");
  const json& expect = c.at("expect");
  if (expect.contains("unsupported")) return Out("expected " + expect.at("unsupported").get<std::string>());

  std::map<std::string, Value> bindings;
  for (const auto& [name, j] : c.at("bindings").items()) {
    std::string why;
    std::optional<Value> v = ValueFromJson(j, &why);
    if (!v) return Out("binding " + name + ": " + why);
    bindings.emplace(name, std::move(*v));
  }
  Env env;
  for (const json& decl : c.at("type_env")) {
    const std::string name = decl.at("name").get<std::string>();
    if (decl.at("type").is_null()) return Out("declaration " + name + ": " + decl.value("why", std::string("?")));
    const std::string spelled = decl.at("type").get<std::string>();
    std::optional<Type> type = ParseType(spelled);
    if (!type) return Out("declaration " + name + ": type " + spelled);
    env.Declare(name, *type);
  }

  const std::string expr = c.at("expr").get<std::string>();
  const bool checked = !c.at("disable_check").get<bool>();
  const bool want_error = expect.contains("error");
  absl::StatusOr<Program> program = checked ? Program::Compile(expr, env) : Program::CompileUnchecked(expr, env);
  if (!program.ok()) {
    if (program.status().code() == absl::StatusCode::kUnimplemented) {
      return Out("unimplemented: " + std::string(program.status().message()));
    }
    if (want_error) return {Verdict::kPass, "error at compile time", std::nullopt, {}};
    return Fail("got compile error " + program.status().ToString() + ", want " + WantText(expect));
  }

  Outcome outcome{Verdict::kPass, {}, std::nullopt, {}};
  const json& expected_type = c.at("expected_type");
  if (checked && expected_type.is_string()) {
    outcome.got_type = program->result_type().Name();
    outcome.types_agree = TypesAgree(outcome.got_type, expected_type.get<std::string>());
  }
  if (expect.contains("type_only")) return outcome;

  std::vector<Value> slots;
  for (const std::string& name : program->variables()) {
    auto it = bindings.find(name);
    slots.push_back(it != bindings.end() ? it->second : Value::Err("no such attribute: " + name));
  }
  const Value got = program->Eval(slots);
  if (want_error) {
    if (got.is_error()) return outcome;
    outcome.verdict = Verdict::kFail;
    outcome.detail = "got " + Describe(got) + ", want " + WantText(expect);
    return outcome;
  }
  std::string why;
  std::optional<Value> want = ValueFromJson(expect.at("value"), &why);
  if (!want) return Out("expected " + why);
  if (!SameValue(got, *want)) {
    outcome.verdict = Verdict::kFail;
    outcome.detail = "got " + Describe(got) + ", want " + Describe(*want);
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------
// Self-tests of the runner's own pieces: no JSON needed.

TEST(CelConformanceRunnerTest, SameValueIsStrictAboutKinds) {
  EXPECT_TRUE(SameValue(Value::Int(1), Value::Int(1)));
  EXPECT_FALSE(SameValue(Value::Int(1), Value::Uint(1)));
  EXPECT_FALSE(SameValue(Value::Int(1), Value::Double(1.0)));
  EXPECT_FALSE(SameValue(Value::Uint(1), Value::Double(1.0)));
  EXPECT_FALSE(SameValue(Value::Int(1), Value::Int(2)));
  EXPECT_FALSE(SameValue(Value::Null(), Value::Bool(false)));
  EXPECT_FALSE(SameValue(Value::String("a"), Value::BytesOf("a")));
  EXPECT_FALSE(SameValue(Value::String("int"), Value::TypeOf("int")));
  EXPECT_TRUE(SameValue(Value::TypeOf("list"), Value::TypeOf("list")));
  EXPECT_FALSE(SameValue(Value::TypeOf("list"), Value::TypeOf("map")));
  EXPECT_TRUE(SameValue(Value::Err("division by zero"), Value::Err("anything")));
  EXPECT_FALSE(SameValue(Value::Err("x"), Value::Null()));
  EXPECT_FALSE(SameValue(Value::Null(), Value::Err("x")));
}

TEST(CelConformanceRunnerTest, SameValueComparesDoublesBitForBit) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(SameValue(Value::Double(nan), Value::Double(-nan)));
  EXPECT_FALSE(SameValue(Value::Double(nan), Value::Double(0.0)));
  EXPECT_FALSE(SameValue(Value::Double(0.0), Value::Double(-0.0)));
  EXPECT_TRUE(SameValue(Value::Double(-0.0), Value::Double(-0.0)));
  EXPECT_TRUE(SameValue(Value::Double(0.1 + 0.2), Value::Double(0.30000000000000004)));
  EXPECT_FALSE(SameValue(Value::Double(0.1 + 0.2), Value::Double(0.3)));
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(SameValue(Value::Double(inf), Value::Double(inf)));
  EXPECT_FALSE(SameValue(Value::Double(inf), Value::Double(-inf)));
}

TEST(CelConformanceRunnerTest, SameValueComparesListsInOrderAndMapsAsSets) {
  const Value list = Value::ListOf({Value::Int(1), Value::String("a")});
  EXPECT_TRUE(SameValue(list, Value::ListOf({Value::Int(1), Value::String("a")})));
  EXPECT_FALSE(SameValue(list, Value::ListOf({Value::String("a"), Value::Int(1)})));
  EXPECT_FALSE(SameValue(list, Value::ListOf({Value::Uint(1), Value::String("a")})));
  EXPECT_FALSE(SameValue(list, Value::ListOf({Value::Int(1)})));
  EXPECT_FALSE(SameValue(Value::ListOf({}), Value::MapOf({})));

  const Value map = Value::MapOf({{Value::String("k"), Value::Int(1)}, {Value::Int(2), Value::ListOf({})}});
  EXPECT_TRUE(SameValue(map, Value::MapOf({{Value::Int(2), Value::ListOf({})}, {Value::String("k"), Value::Int(1)}})));
  EXPECT_FALSE(SameValue(map, Value::MapOf({{Value::String("k"), Value::Int(1)}, {Value::Uint(2), Value::ListOf({})}})));
  EXPECT_FALSE(SameValue(map, Value::MapOf({{Value::String("k"), Value::Int(1)}, {Value::Int(2), Value::ListOf({Value::Null()})}})));
  EXPECT_FALSE(SameValue(map, Value::MapOf({{Value::String("k"), Value::Int(1)}})));
  // Each entry matches once: two equal entries on one side do not cover two different ones.
  EXPECT_FALSE(SameValue(Value::MapOf({{Value::Int(1), Value::Null()}, {Value::Int(1), Value::Null()}}),
                         Value::MapOf({{Value::Int(1), Value::Null()}, {Value::Int(2), Value::Null()}})));
}

TEST(CelConformanceRunnerTest, ParsesTheSubsetsTypeStrings) {
  const char* const kRoundTrips[] = {"int",       "uint",   "double", "bool",       "string",           "bytes",
                                     "null_type", "dyn",    "type",   "list(int)", "map(string, dyn)", "list(map(int, list(bytes)))"};
  for (const char* text : kRoundTrips) {
    std::optional<Type> t = ParseType(text);
    ASSERT_TRUE(t.has_value()) << text;
    EXPECT_EQ(Spell(*t), text);
  }
  ASSERT_TRUE(ParseType("map(string,int)").has_value());
  EXPECT_EQ(Spell(*ParseType("map(string,int)")), "map(string, int)");
  EXPECT_EQ(ParseType("list(string)")->tag, Type::Tag::kList);
  EXPECT_EQ(ParseType("list(string)")->elem().tag, Type::Tag::kString);

  const char* const kRejected[] = {"",          "list",         "list(int",      "list()",         "map(int)",
                                   "map(int, )", "list(int))",  "int x",         "null",           "wrapper(int)",
                                   "type(int)", "timestamp",    "google.protobuf.Int32Value",      "Int",
                                   "cel.expr.conformance.proto3.TestAllTypes",   "list(optional_type(int))"};
  for (const char* text : kRejected) EXPECT_FALSE(ParseType(text).has_value()) << text;
}

TEST(CelConformanceRunnerTest, ReadsTheExportedValueShape) {
  std::string why;
  auto read = [&why](const char* text) { return ValueFromJson(json::parse(text), &why); };

  ASSERT_TRUE(read(R"({"int":"-9223372036854775808"})"));
  EXPECT_TRUE(SameValue(*read(R"({"int":"-9223372036854775808"})"), Value::Int(std::numeric_limits<std::int64_t>::min())));
  EXPECT_TRUE(SameValue(*read(R"({"uint":"18446744073709551615"})"), Value::Uint(std::numeric_limits<std::uint64_t>::max())));
  EXPECT_TRUE(SameValue(*read(R"({"double":1.5})"), Value::Double(1.5)));
  EXPECT_TRUE(SameValue(*read(R"({"double":3})"), Value::Double(3.0)));
  EXPECT_TRUE(SameValue(*read(R"({"double":"-0"})"), Value::Double(-0.0)));
  EXPECT_TRUE(std::isnan(read(R"({"double":"NaN"})")->double_value()));
  EXPECT_TRUE(SameValue(*read(R"({"double":"-Infinity"})"), Value::Double(-std::numeric_limits<double>::infinity())));
  EXPECT_TRUE(SameValue(*read(R"({"bytes_hex":"00ffC3bf"})"), Value::BytesOf(std::string("\x00\xff\xc3\xbf", 4))));
  EXPECT_TRUE(SameValue(*read(R"({"string":"ίσος"})"), Value::String("ίσος")));
  EXPECT_TRUE(SameValue(*read(R"({"null":true})"), Value::Null()));
  EXPECT_TRUE(SameValue(*read(R"({"bool":false})"), Value::Bool(false)));
  EXPECT_TRUE(SameValue(*read(R"({"type":"null_type"})"), Value::TypeOf("null_type")));
  EXPECT_TRUE(SameValue(*read(R"({"list":[{"int":"1"},{"list":[]}]})"),
                        Value::ListOf({Value::Int(1), Value::ListOf({})})));
  EXPECT_TRUE(SameValue(*read(R"({"map":[[{"string":"k"},{"uint":"2"}]]})"),
                        Value::MapOf({{Value::String("k"), Value::Uint(2)}})));

  EXPECT_FALSE(read(R"({"unsupported":"message google.protobuf.Int32Value"})"));
  EXPECT_EQ(why, "message google.protobuf.Int32Value");
  EXPECT_FALSE(read(R"({"list":[{"int":"1"},{"unsupported":"enum E"}]})"));
  EXPECT_EQ(why, "enum E");
  const char* const kMalformed[] = {R"({"int":"1.5"})",      R"({"int":"9223372036854775808"})", R"({"uint":"-1"})",
                                    R"({"int":5})",          R"({"bytes_hex":"abc"})",           R"({"bytes_hex":"zz"})",
                                    R"({"double":"nan"})",   R"({"map":[[{"int":"1"}]]})",       R"({})",
                                    R"({"int":"1","uint":"1"})", R"([])",                        R"({"int":""})"};
  for (const char* text : kMalformed) EXPECT_FALSE(read(text)) << text;
}

TEST(CelConformanceRunnerTest, ReadsKnownFailures) {
  std::istringstream in(
      "# reasons in comments\n"
      "\n"
      "string/matches/basic   # RE2 syntax not supported\n"
      "  lists/index/zero_based\r\n"
      "string/matches/basic\n");
  const KnownFailures known = ParseKnownFailures(in);
  EXPECT_EQ(known.line_of.size(), 2u);
  EXPECT_EQ(known.line_of.at("string/matches/basic"), 3);
  EXPECT_EQ(known.line_of.at("lists/index/zero_based"), 4);
  ASSERT_EQ(known.problems.size(), 1u);
  EXPECT_NE(known.problems[0].find("listed twice"), std::string::npos);
}

TEST(CelConformanceRunnerTest, DescribesValuesWithTheirKinds) {
  EXPECT_EQ(Describe(Value::Int(-1)), "-1");
  EXPECT_EQ(Describe(Value::Uint(1)), "1u");
  EXPECT_EQ(Describe(Value::Double(1.0)), "1.0");
  EXPECT_EQ(Describe(Value::Double(-0.0)), "-0.0");
  EXPECT_EQ(Describe(Value::Double(0.1)), "0.1");
  EXPECT_EQ(Describe(Value::Double(1e100)), "1e+100");
  EXPECT_EQ(Describe(Value::Double(std::numeric_limits<double>::quiet_NaN())), "double(NaN)");
  EXPECT_EQ(Describe(Value::String("a\"b")), R"("a\"b")");
  EXPECT_EQ(Describe(Value::BytesOf("a\xff")), R"(b"a\xff")");
  EXPECT_EQ(Describe(Value::TypeOf("int")), "<type int>");
  EXPECT_EQ(Describe(Value::Err("no such key: a")), "error(no such key: a)");
  EXPECT_EQ(Describe(Value::MapOf({{Value::String("k"), Value::ListOf({Value::Null(), Value::Bool(true)})}})),
            R"({"k": [null, true]})");
  EXPECT_EQ(OneLine("a\n&& b"), "a\\n&& b");
}

TEST(CelConformanceRunnerTest, TypesAgreeAllowsOnlyTheUnparameterisedTypeOfTypes) {
  EXPECT_TRUE(TypesAgree("map(string, int)", "map(string, int)"));
  EXPECT_TRUE(TypesAgree("type", "type(int)"));
  EXPECT_FALSE(TypesAgree("dyn", "int"));
  EXPECT_FALSE(TypesAgree("list(dyn)", "list(int)"));
  EXPECT_FALSE(TypesAgree("typ", "type(int)"));
}

// ---------------------------------------------------------------------------------------
// The suite.

struct SuiteStats {
  int cases = 0, pass = 0, fail = 0, known = 0, out = 0, type_agree = 0, type_disagree = 0;
};

bool Verbose() {
  const char* v = std::getenv("STRATA_CEL_CONFORMANCE_VERBOSE");
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

TEST(CelConformanceTest, GoogleConformanceSuite) {
  const char* path = std::getenv("STRATA_CEL_CONFORMANCE_JSON");
  if (path == nullptr || *path == '\0') {
    GTEST_SKIP() << "STRATA_CEL_CONFORMANCE_JSON is not set: run tests/rules/conformance/run.sh OUT.json "
                    "BINARY (ctest does), which exports the pinned suite and sets it";
  }
  std::ifstream file(path);
  ASSERT_TRUE(file) << "cannot open " << path;
  const json cases = json::parse(file);
  ASSERT_TRUE(cases.is_array() && !cases.empty()) << path << " holds no cases";

  KnownFailures known;
  if (const char* known_path = std::getenv("STRATA_CEL_KNOWN_FAILURES"); known_path != nullptr && *known_path != '\0') {
    std::ifstream in(known_path);
    ASSERT_TRUE(in) << "cannot open " << known_path;
    known = ParseKnownFailures(in);
  } else {
    std::printf("note: STRATA_CEL_KNOWN_FAILURES is not set; no failure is known\n");
  }
  for (const std::string& problem : known.problems) ADD_FAILURE() << "known_failures.txt " << problem;

  std::vector<std::string> suite_order;
  std::map<std::string, SuiteStats> stats;
  std::vector<std::string> failures;        // not listed
  std::vector<std::string> known_failures;  // listed, still failing
  std::vector<std::string> disagreements;
  std::map<std::string, int> out_reasons;  // in-scope suites only
  std::set<std::string> seen;
  std::vector<std::string> verbose_lines;

  for (const json& c : cases) {
    const std::string suite = c.at("suite").get<std::string>();
    const std::string key = suite + "/" + c.at("section").get<std::string>() + "/" + c.at("name").get<std::string>();
    const std::string expr = OneLine(c.at("expr").get<std::string>());
    seen.insert(key);
    if (!stats.contains(suite)) suite_order.push_back(suite);
    SuiteStats& s = stats[suite];
    ++s.cases;

    Outcome o;
    try {
      o = RunCase(c);
    } catch (const std::exception& e) {
      o = Fail(std::string("threw ") + e.what());
    }
    const bool listed = known.line_of.contains(key);
    switch (o.verdict) {
      case Verdict::kPass:
        ++s.pass;
        if (listed) {
          ADD_FAILURE() << key << " passes now: remove it from known_failures.txt (line " << known.line_of.at(key) << ")";
        }
        break;
      case Verdict::kFail:
        ++s.fail;
        if (listed) {
          ++s.known;
          known_failures.push_back(key + ": " + expr + " -> " + o.detail);
        } else {
          failures.push_back(key + ": " + expr + " -> " + o.detail);
        }
        break;
      case Verdict::kOutOfSubset:
        ++s.out;
        if (kInScopeSuites.contains(suite)) {
          std::string reason = o.detail.substr(0, 90);
          // "unimplemented: 1:5: message literals" -> "unimplemented: message literals"
          if (reason.rfind("unimplemented: ", 0) == 0) {
            const std::size_t colon = reason.find(": ", 15);
            if (colon != std::string::npos && reason.find_first_not_of("0123456789:", 15) >= colon) {
              reason = "unimplemented: " + reason.substr(colon + 2);
            }
          }
          ++out_reasons[reason];
          if (Verbose()) verbose_lines.push_back("OUT  " + key + ": " + expr + " -> " + o.detail);
        }
        if (listed) {
          ADD_FAILURE() << key << " is out of the subset now, not failing: remove it from known_failures.txt (line "
                        << known.line_of.at(key) << ")";
        }
        break;
    }
    if (o.types_agree.has_value()) {
      if (*o.types_agree) {
        ++s.type_agree;
      } else {
        ++s.type_disagree;
        disagreements.push_back(key + ": " + expr + " -> type " + o.got_type + ", " +
                                c.value("expected_type_source", std::string("?")) + " says " +
                                c.at("expected_type").get<std::string>());
      }
    }
  }
  for (const auto& [key, line] : known.line_of) {
    if (!seen.contains(key)) ADD_FAILURE() << "known_failures.txt line " << line << ": no case " << key;
  }

  // The table.
  std::printf("\nCEL conformance (%zu cases)\n", cases.size());
  std::printf("%-16s %6s %6s %6s %6s %6s %7s %7s\n", "suite", "cases", "pass", "fail", "known", "out", "type=", "type!=");
  SuiteStats in_scope;
  SuiteStats all;
  auto add = [](SuiteStats& total, const SuiteStats& s) {
    total.cases += s.cases;
    total.pass += s.pass;
    total.fail += s.fail;
    total.known += s.known;
    total.out += s.out;
    total.type_agree += s.type_agree;
    total.type_disagree += s.type_disagree;
  };
  auto row = [](const std::string& name, const SuiteStats& s, const char* note) {
    std::printf("%-16s %6d %6d %6d %6d %6d %7d %7d%s\n", name.c_str(), s.cases, s.pass, s.fail, s.known, s.out,
                s.type_agree, s.type_disagree, note);
  };
  for (const std::string& suite : suite_order) {
    const bool scoped = kInScopeSuites.contains(suite);
    row(suite, stats[suite], scoped ? "" : "  (suite out of subset)");
    add(all, stats[suite]);
    if (scoped) add(in_scope, stats[suite]);
  }
  row("= in scope", in_scope, "");
  row("= all", all, "");

  if (!out_reasons.empty()) {
    std::vector<std::pair<std::string, int>> reasons(out_reasons.begin(), out_reasons.end());
    std::stable_sort(reasons.begin(), reasons.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::printf("\nout of subset in in-scope suites, by reason%s:\n", Verbose() ? "" : " (STRATA_CEL_CONFORMANCE_VERBOSE=1 lists the cases)");
    for (const auto& [reason, n] : reasons) std::printf("%6d  %s\n", n, reason.c_str());
  }
  for (const std::string& line : verbose_lines) std::printf("%s\n", line.c_str());
  if (!disagreements.empty()) {
    const std::size_t shown = Verbose() ? disagreements.size() : std::min<std::size_t>(disagreements.size(), 40);
    std::printf("\ntype disagreements (%zu, not failures%s):\n", disagreements.size(),
                shown < disagreements.size() ? "; STRATA_CEL_CONFORMANCE_VERBOSE=1 lists all" : "");
    for (std::size_t i = 0; i < shown; ++i) std::printf("  %s\n", disagreements[i].c_str());
  }
  if (!known_failures.empty()) {
    std::printf("\nknown failures (%zu, in known_failures.txt):\n", known_failures.size());
    for (const std::string& line : known_failures) std::printf("  %s\n", line.c_str());
  }
  if (!failures.empty()) {
    std::printf("\nFAIL (%zu):\n", failures.size());
    for (const std::string& line : failures) std::printf("FAIL %s\n", line.c_str());
  }
  std::fflush(stdout);

  EXPECT_EQ(failures.size(), 0u) << "cases fail that known_failures.txt does not list (above, FAIL ...)";
  EXPECT_GE(in_scope.pass, kMinInScopePasses) << "too few in-scope cases pass: is the runner judging anything?";
}

}  // namespace
}  // namespace strata::rules
