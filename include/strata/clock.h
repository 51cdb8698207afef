// Wall-clock time in the one unit Strata uses on the wire and in storage: milliseconds since
// the Unix epoch. Components take a Clock so tests can inject time.
#pragma once

#include <cstdint>
#include <functional>

namespace strata {

using Clock = std::function<std::int64_t()>;

// Milliseconds since the Unix epoch, from the system clock.
std::int64_t NowMs();

}  // namespace strata
