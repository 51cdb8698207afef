#include <strata/ids.h>

#include <string>

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
  return absl::OkStatus();
}

}  // namespace strata
