// Fuzzes the rules' expression language: any bytes as an expression are compiled (checked,
// and unchecked) and, when they compile, evaluated with every variable bound to a value of
// a kind the input chooses. Nothing may crash, hang, or grow past the limits: a bad
// expression is a status, a bad evaluation an error value.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

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
  return 0;
}
