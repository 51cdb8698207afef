// Limits on request fields shared by the services, so that every entry point rejects the same
// input with the same message.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <google/protobuf/map.h>

namespace strata::services {

inline constexpr std::size_t kMaxNameBytes = 256;
inline constexpr std::size_t kMaxLabels = 64;
inline constexpr std::size_t kMaxLabelBytes = 256;
inline constexpr std::size_t kMaxAttributeBytes = 4096;
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

inline absl::Status CheckLength(std::string_view field, std::string_view value, std::size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(std::string(field) + " is longer than " + std::to_string(max) + " bytes");
  }
  return absl::OkStatus();
}

inline absl::Status CheckStringMap(std::string_view field, const google::protobuf::Map<std::string, std::string>& m,
                                   std::size_t max_value_bytes) {
  if (m.size() > kMaxLabels) {
    return absl::InvalidArgumentError(std::string(field) + " has more than " + std::to_string(kMaxLabels) +
                                      " entries");
  }
  for (const auto& [k, v] : m) {
    if (k.empty()) return absl::InvalidArgumentError(std::string(field) + " has an empty key");
    if (auto s = CheckLength(std::string(field) + " key", k, kMaxLabelBytes); !s.ok()) return s;
    if (auto s = CheckLength(std::string(field) + "." + k, v, max_value_bytes); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// 0 means the default; otherwise 1..kMaxPageSize.
inline absl::Status CheckPageSize(int page_size) {
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError("page_size must be between 1 and " + std::to_string(kMaxPageSize) +
                                      " (0 for the default of " + std::to_string(kDefaultPageSize) + ")");
  }
  return absl::OkStatus();
}

}  // namespace strata::services
