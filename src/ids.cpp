#include <strata/ids.h>

#include <cstdint>
#include <random>
#include <string>

#include <utf8cpp/utf8.h>

namespace strata {
namespace {

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

}  // namespace

absl::Status ValidateId(std::string_view what, std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(std::string(what) + " must not be empty");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(std::string(what) + " is longer than " + std::to_string(kMaxIdBytes) +
                                      " bytes");
  }
  for (unsigned char c : id) {
    if (c == '/' || c == '+' || c == '#' || IsControl(c)) {
      return absl::InvalidArgumentError(std::string(what) +
                                        " must not contain '/', '+', '#' or control characters");
    }
  }
  // Ids are stored as text and written into JSON: PostgreSQL refuses invalid UTF-8.
  if (!utf8::is_valid(id.begin(), id.end())) return absl::InvalidArgumentError(std::string(what) + " is not valid UTF-8");
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("telemetry key must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError("telemetry key is longer than " + std::to_string(kMaxKeyBytes) + " bytes");
  }
  for (unsigned char c : key) {
    if (IsControl(c)) return absl::InvalidArgumentError("telemetry key must not contain control characters");
  }
  if (!utf8::is_valid(key.begin(), key.end())) return absl::InvalidArgumentError("telemetry key is not valid UTF-8");
  return absl::OkStatus();
}

std::string RandomId() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                          (static_cast<std::uint64_t>(std::random_device{}()) << 32)};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int half = 0; half < 2; ++half) {
    std::uint64_t r = rng();
    for (int i = 0; i < 16; ++i, r >>= 4) id.push_back(kHex[r & 0xf]);
  }
  return id;
}

}  // namespace strata
