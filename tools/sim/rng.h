// A small seeded random number generator whose output is the same on every platform and
// standard library, so `--seed` reproduces a run exactly (std::normal_distribution and friends
// are implementation-defined, so they are not used).
#pragma once

#include <cstdint>
#include <string_view>

namespace strata::sim {

// xoshiro256** seeded through splitmix64 (Blackman and Vigna). Not for cryptography.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);

  std::uint64_t NextU64();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n); n > 0.
  std::uint64_t Below(std::uint64_t n);
  // Standard normal (Box-Muller; the second value of each pair is kept for the next call).
  double Normal();
  bool Bernoulli(double p) { return Uniform() < p; }

 private:
  std::uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0;
};

// Derives an independent seed for a named stream ("values/mfg-0001", "choices") from the run
// seed, so adding a device or changing one option does not shift every other stream.
std::uint64_t DeriveSeed(std::uint64_t seed, std::string_view stream);

}  // namespace strata::sim
