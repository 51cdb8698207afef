// Fuzzes the rules' expression language: any bytes as an expression are compiled (checked,
// and unchecked) and, when they compile, evaluated with every variable bound to a value of
// a kind the input chooses. Nothing may crash, hang, or grow past the limits: a bad
// expression is a status, a bad evaluation an error value.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <strata/rules/engine.h>
#include <strata/rules/expr.h>

using strata::rules::Env;
using strata::rules::Program;
using strata::rules::Type;
using strata::rules::Value;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t choice = data[0];
  const std::string_view src(reinterpret_cast<const char*>(data + 1), size - 1);
  const Env env = Env{}
                      .Declare("attr", Type::Map(Type::Of(Type::Tag::kString), Type::Of(Type::Tag::kString)))
                      .UndeclaredAreDyn();
  for (const bool checked : {true, false}) {
    auto p = checked ? Program::Compile(src, env) : Program::CompileUnchecked(src, env);
    if (!p.ok()) continue;
    std::vector<Value> slots;
    for (std::size_t i = 0; i < p->variables().size(); ++i) {
      switch ((choice + i) % 6) {
        case 0: slots.push_back(Value::Int(INT64_MIN)); break;
        case 1: slots.push_back(Value::Double(-0.0)); break;
        case 2: slots.push_back(Value::String("a.b")); break;
        case 3: slots.push_back(Value::ListOf({Value::Int(1), Value::Uint(2)})); break;
        case 4: slots.push_back(Value::MapOf({{Value::String("a"), Value::Bool(true)}})); break;
        default: slots.push_back(Value::Err("no such key")); break;
      }
    }
    (void)p->Eval(slots).DebugString();
  }
  // The same text as a rule's condition, with clauses the first byte chooses, over readings
  // whose times and values come from the input; the state must survive a round trip.
  strata::rules::RuleDefinition def;
  def.alarm_type = "fuzz";
  def.raise = {{strata::rules::Severity::kMajor, std::string(src)}};
  if (choice & 1) def.for_ms = 1000 * (choice % 7);
  if (choice & 2) def.times = 2, def.within_ms = 5000;
  if (choice & 4) def.clear_after_ms = 3000;
  if (choice & 8) {
    def.window.size_ms = 4000;
    def.window.hop_ms = (choice & 16) ? 2000 : 0;
    def.window.lateness_ms = 1000;
    def.window.outputs = {{"temperature", strata::rules::Aggregate::kAvg, "t"},
                          {"n", strata::rules::Aggregate::kCount, "t"}};
  }
  auto rule = strata::rules::Rule::Compile(def);
  if (!rule.ok()) return 0;
  strata::rules::RuleState state;
  std::int64_t ts = 0;
  for (std::size_t i = 1; i < size && i < 64; ++i) {
    ts += static_cast<std::int64_t>(data[i] % 16) * 500 - 1500;  // sometimes backwards
    strata::rules::Reading r{"d" + std::to_string(data[i] % 3), ts,
                             {{"t", Value::Double(data[i])}, {"temperature", Value::Int(data[i] - 100)}},
                             Value::Null()};
    (void)rule->Process(state, r);
    if (data[i] % 5 == 0) (void)rule->Tick(state, ts + 10000);
  }
  auto again = strata::rules::RuleState::Parse(state.Serialize());
  if (!again.ok() || again->Serialize() != state.Serialize()) __builtin_trap();
  return 0;
}
