// Numbers as CEL has them: int, uint and double compare with each other by value (int with
// uint exactly, either with double as doubles), and string(double) is written the way CEL's reference
// implementation writes it (the shortest digits that read back to the same double).
#pragma once

#include <string>

#include <strata/rules/value.h>

namespace strata::rules {

enum class Order { kLess, kEqual, kGreater, kUnordered };  // kUnordered: a NaN is involved

// a and b are each an int, a uint or a double.
Order CompareNumbers(const Value& a, const Value& b);

// 1.5 -> "1.5", 1e6 -> "1e+06", 1e-7 -> "1e-07", 123456.0 -> "123456", NaN -> "NaN",
// infinity -> "+Inf".
std::string FormatDouble(double d);

}  // namespace strata::rules
