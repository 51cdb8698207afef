#include "rng.h"

#include <cmath>
#include <numbers>

namespace strata::sim {
namespace {

std::uint64_t SplitMix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t Rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = SplitMix64(seed);
}

std::uint64_t Rng::NextU64() {
  const std::uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::Below(std::uint64_t n) {
  // Rejection sampling: no modulo bias.
  const std::uint64_t limit = -n % n;  // == 2^64 mod n
  while (true) {
    const std::uint64_t r = NextU64();
    if (r >= limit) return r % n;
  }
}

double Rng::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = Uniform();
  while (u1 <= 0.0) u1 = Uniform();
  const double u2 = Uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 2.0 * std::numbers::pi * u2;
  spare_ = r * std::sin(a);
  has_spare_ = true;
  return r * std::cos(a);
}

std::uint64_t DeriveSeed(std::uint64_t seed, std::string_view stream) {
  // FNV-1a over the stream name, mixed with the seed through splitmix64.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : stream) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  std::uint64_t x = seed ^ h;
  SplitMix64(x);
  return SplitMix64(x);
}

}  // namespace strata::sim
