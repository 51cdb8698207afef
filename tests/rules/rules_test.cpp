// The rules' expression language: compile errors with positions, what is outside the
// subset, CEL's evaluation semantics where a rule depends on them, and the limits that keep a
// hostile expression from costing more than its size. CEL's own conformance suite runs in
// cel_conformance_test.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <strata/rules/expr.h>

namespace strata::rules {
namespace {

Env RuleEnv() {
  return Env{}.Declare("attr", Type::Map(Type::Of(Type::Tag::kString), Type::Of(Type::Tag::kString))).UndeclaredAreDyn();
}

// Compiles (checked) and evaluates with the named values; a name not given is absent.
Value EvalRule(const std::string& src, const std::vector<std::pair<std::string, Value>>& values = {},
          const Env& env = RuleEnv()) {
  auto p = Program::Compile(src, env);
  EXPECT_TRUE(p.ok()) << src << ": " << p.status();
  if (!p.ok()) return Value::Err("compile");
  std::vector<Value> slots;
  for (const std::string& name : p->variables()) {
    Value v = Value::Err("no such key: " + name);
    for (const auto& [n, given] : values) {
      if (n == name) v = given;
    }
    slots.push_back(v);
  }
  return p->Eval(slots);
}

absl::Status CompileStatus(const std::string& src, const Env& env = RuleEnv()) {
  return Program::Compile(src, env).status();
}

TEST(RulesExprTest, ARuleOverReadingKeysAndAttributes) {
  const auto attrs = Value::MapOf({{Value::String("zone"), Value::String("A")}});
  const std::string rule = "temperature > 85.0 && attr.zone == 'A'";
  EXPECT_TRUE(EvalRule(rule, {{"temperature", Value::Double(90)}, {"attr", attrs}}).bool_value());
  EXPECT_FALSE(EvalRule(rule, {{"temperature", Value::Double(80)}, {"attr", attrs}}).bool_value());
  // A reading's key is dyn: an int reading compares with a double literal by value.
  EXPECT_TRUE(EvalRule(rule, {{"temperature", Value::Int(86)}, {"attr", attrs}}).bool_value());
  auto p = Program::Compile(rule, RuleEnv());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->variables(), (std::vector<std::string>{"temperature", "attr"}));
  EXPECT_EQ(p->result_type().Name(), "bool");
}

TEST(RulesExprTest, OrAcrossKeysAbsorbsTheMissingOne) {
  // CEL's || is commutative over errors: a key the reading lacks does not hide the other.
  const std::string rule = "temperature > 85.0 || vibration > 3.0";
  EXPECT_TRUE(EvalRule(rule, {{"vibration", Value::Double(4)}}).bool_value());
  EXPECT_TRUE(EvalRule(rule, {{"temperature", Value::Double(90)}}).bool_value());
  EXPECT_TRUE(EvalRule(rule, {{"vibration", Value::Double(1)}}).is_error()) << "false || error is the error";
  EXPECT_FALSE(EvalRule("temperature > 85.0 && vibration > 3.0", {{"vibration", Value::Double(1)}}).bool_value());
  EXPECT_TRUE(EvalRule("has(reading.temperature) ? reading.temperature > 1 : false",
                  {{"reading", Value::MapOf({})}}).is(Kind::kBool));
}

TEST(RulesExprTest, ErrorsNameTheLineAndColumn) {
  absl::Status s = CompileStatus("temperature >");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().substr(0, 5), "1:14:") << s;
  s = CompileStatus("temperature > 1 &&\n  attr.zone + 1 == 2");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("2:13: found no matching overload for '_+_' applied to '(string, int)'"),
            std::string::npos)
      << s;
  s = CompileStatus("x = 1");
  EXPECT_NE(s.message().find("1:3: unexpected '='"), std::string::npos) << s;
  s = CompileStatus("'abc'.matches('(')");
  EXPECT_NE(s.message().find("1:15: invalid regular expression"), std::string::npos) << s;
  s = CompileStatus("temperature > 1", Env{});
  EXPECT_NE(s.message().find("1:1: undeclared reference to 'temperature'"), std::string::npos) << s;
  s = CompileStatus("nosuch(1)");
  EXPECT_NE(s.message().find("undeclared reference to 'nosuch'"), std::string::npos) << s;
  s = CompileStatus("'abc' < 1");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = CompileStatus("\"unterminated");
  EXPECT_NE(s.message().find("1:1: unterminated string literal"), std::string::npos) << s;
  s = CompileStatus("9223372036854775808");
  EXPECT_NE(s.message().find("out of range"), std::string::npos) << s;
  s = CompileStatus("if > 1");
  EXPECT_NE(s.message().find("reserved word"), std::string::npos) << s;
}

TEST(RulesExprTest, WhatIsOutsideTheSubsetIsRefusedAtCompileTime) {
  for (const char* src : {"[1, 2].all(x, x > 0)", "[1].exists(x, x == 1)", "[1].map(x, x * 2)",
                          "timestamp('2026-01-01T00:00:00Z')", "duration('1s')", "google.protobuf.Int32Value{value: 1}",
                          "msg.?field", "'%d'.format([1])", "base64.encode(b'a')", "cel.bind(x, 1, x)"}) {
    EXPECT_EQ(CompileStatus(src).code(), absl::StatusCode::kUnimplemented) << src << ": " << CompileStatus(src);
  }
}

TEST(RulesExprTest, ArithmeticIsCheckedNotWrapped) {
  EXPECT_TRUE(EvalRule("x + 1", {{"x", Value::Int(INT64_MAX)}}).is_error());
  EXPECT_TRUE(EvalRule("x - 1u", {{"x", Value::Uint(0)}}).is_error());
  EXPECT_TRUE(EvalRule("x / 0", {{"x", Value::Int(1)}}).is_error());
  EXPECT_TRUE(EvalRule("x % 0", {{"x", Value::Int(1)}}).is_error());
  EXPECT_TRUE(EvalRule("-x", {{"x", Value::Int(INT64_MIN)}}).is_error());
  EXPECT_EQ(EvalRule("-9223372036854775808").int_value(), INT64_MIN);
  EXPECT_EQ(EvalRule("7 / -2").int_value(), -3);
  EXPECT_EQ(EvalRule("-7 % 3").int_value(), -1);
  EXPECT_TRUE(std::isinf(EvalRule("1.0 / 0.0").double_value()));
  EXPECT_EQ(EvalRule("0x1Fu + 1u == 32u").bool_value(), true);
}

TEST(RulesExprTest, NumbersCompareAcrossTypesByValue) {
  EXPECT_TRUE(EvalRule("x == 1.0", {{"x", Value::Int(1)}}).bool_value());
  EXPECT_TRUE(EvalRule("x < 2.5", {{"x", Value::Uint(2)}}).bool_value());
  EXPECT_FALSE(EvalRule("x == x", {{"x", Value::Double(NAN)}}).bool_value());
  // An int meets a double as a double, as CEL says: INT64_MAX converts to 2^63.
  EXPECT_FALSE(EvalRule("x < 9223372036854775808.0", {{"x", Value::Int(INT64_MAX)}}).bool_value());
  EXPECT_TRUE(EvalRule("x < 18446744073709551615u", {{"x", Value::Int(INT64_MAX)}}).bool_value()) << "int and uint exactly";
  EXPECT_TRUE(EvalRule("dyn(1) in [1.0, 2.0]").bool_value());
  EXPECT_TRUE(EvalRule("{1: 'a'}[x] == 'a'", {{"x", Value::Double(1.0)}}).bool_value());
}

TEST(RulesExprTest, ConversionsAndStrings) {
  EXPECT_EQ(EvalRule("string(1e6)").string_value(), "1e+06");
  EXPECT_EQ(EvalRule("string(123456.0)").string_value(), "123456");
  EXPECT_EQ(EvalRule("string(0.0001)").string_value(), "0.0001");
  EXPECT_EQ(EvalRule("string(1.5e-7)").string_value(), "1.5e-07");
  EXPECT_EQ(EvalRule("string(-2.5)").string_value(), "-2.5");
  EXPECT_EQ(EvalRule("int('-42')").int_value(), -42);
  EXPECT_TRUE(EvalRule("int('4x')").is_error());
  EXPECT_TRUE(EvalRule("int(1e19)").is_error());
  EXPECT_TRUE(EvalRule("uint(-1)").is_error());
  EXPECT_EQ(EvalRule("double('2.5')").double_value(), 2.5);
  EXPECT_EQ(EvalRule("size('héllo')").int_value(), 5);
  EXPECT_TRUE(EvalRule("'pm2.5-sensor'.matches('^pm[0-9.]+')").bool_value());
  EXPECT_TRUE(EvalRule("reading['pm2.5'] > 30", {{"reading", Value::MapOf({{Value::String("pm2.5"), Value::Int(35)}})}})
                  .bool_value());
  EXPECT_EQ(EvalRule(R"('\x41\u00e9\101' + r'\n')").string_value(), "A\xc3\xa9" "A\\n");
  EXPECT_EQ(EvalRule("type(1) == int && type('a') == string").bool_value(), true);
  EXPECT_EQ(EvalRule("math.greatest(1, 2.5, 2u)").double_value(), 2.5);
  EXPECT_EQ(EvalRule("math.least([3, -1, 2])").int_value(), -1);
  EXPECT_TRUE(EvalRule("{'a': 1, 'a': 2}").is_error()) << "a repeated key";
  // CEL's strings extension (code points) and the math extension's bit operations.
  for (const char* src : {"'hello world'.split(' ') == ['hello', 'world']", "'a,b,c'.split(',', 2) == ['a', 'b,c']",
                          "'  pump-1 \\t'.trim() == 'pump-1'", "'Zone-A'.lowerAscii() == 'zone-a'",
                          "'héllo'.charAt(1) == 'é'", "'héllo'.indexOf('l') == 2", "'héllo'.lastIndexOf('l') == 3",
                          "['a', 'b'].join('-') == 'a-b'", "'abc'.substring(1) == 'bc'", "'abc'.reverse() == 'cba'",
                          "'aaa'.replace('a', 'b', 2) == 'bba'", "math.bitShiftRight(-1024, 3) == 2305843009213693824",
                          "math.bitAnd(12u, 10u) == 8u"}) {
    EXPECT_TRUE(EvalRule(src).is(Kind::kBool) && EvalRule(src).bool_value()) << src << " -> " << EvalRule(src).DebugString();
  }
  EXPECT_TRUE(EvalRule("'abc'.substring(2, 1)").is_error());
  EXPECT_TRUE(EvalRule("'abc'.charAt(4)").is_error());
}

TEST(RulesExprTest, HostileExpressionsCostNoMoreThanTheirLimits) {
  // Deep nesting, long sources and huge trees are refused with an error, not a crash.
  EXPECT_EQ(CompileStatus(std::string(5000, '(') + "1" + std::string(5000, ')')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CompileStatus(std::string(10000, '!') + "true").code(), absl::StatusCode::kInvalidArgument);
  std::string chain = "1";
  for (int i = 0; i < 3000; ++i) chain += " + 1";
  EXPECT_NE(CompileStatus(chain).message().find("too deep"), std::string::npos) << "a chain is as tall as it is long";
  std::string selects = "a";
  for (int i = 0; i < 3000; ++i) selects += ".b";
  EXPECT_NE(CompileStatus(selects).message().find("too deep"), std::string::npos);
  std::string wide = "[1";
  for (int i = 0; i < 5000; ++i) wide += ",1";
  EXPECT_NE(CompileStatus(wide + "]").message().find("too many parts"), std::string::npos);
  // Inputs cannot make an evaluation cost more than its budget: doubling a 4 KiB string
  // 200 times is an error value, not gigabytes.
  std::string doubling = "s";
  for (int i = 0; i < 200; ++i) doubling += " + s";
  const Value big = EvalRule("size(" + doubling + ") > 0", {{"s", Value::String(std::string(4096, 'x'))}});
  EXPECT_TRUE(big.is_error()) << big.DebugString();
  EXPECT_NE(big.error().find("more than"), std::string::npos) << big.error();
  EXPECT_TRUE(EvalRule("size(s + s) == 8192", {{"s", Value::String(std::string(4096, 'x'))}}).bool_value());
  EXPECT_NE(CompileStatus(std::string(17 * 1024, ' ')).message().find("limit"), std::string::npos);
  EXPECT_EQ(CompileStatus("'\xff'").code(), absl::StatusCode::kInvalidArgument) << "invalid UTF-8";
  // Within the limits the same shapes work.
  EXPECT_EQ(EvalRule(std::string(90, '(') + "1" + std::string(90, ')')).int_value(), 1);
}

}  // namespace
}  // namespace strata::rules
