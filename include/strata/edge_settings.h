// The settings of an edge that the cloud manages (strata.v1.EdgeSettings), checked the same
// way where they are set (the registry) and where they are applied (the edge's config store).
// Header-only.
#pragma once

#include <cstdint>

#include <absl/status/status.h>

#include "strata/v1/registry.pb.h"

namespace strata {

inline constexpr std::int64_t kMaxBufferAgeMs = 365LL * 24 * 3600 * 1000;

// Ranges for values set from afar: narrower than the agent's own flags (a buffer of a few KB
// or a linger of a minute is for a test on the box, not for a fleet).
inline absl::Status ValidateEdgeSettings(const v1::EdgeSettings& s) {
  if (s.has_batch_max() && (s.batch_max() < 1 || s.batch_max() > 50000)) {
    return absl::InvalidArgumentError("settings.batch_max must be 1 to 50000");
  }
  // Short: the uplink's writer waits this long for a batch to fill, heartbeats included.
  if (s.has_batch_linger_ms() && s.batch_linger_ms() > 5000) {
    return absl::InvalidArgumentError("settings.batch_linger_ms must be 0 to 5000");
  }
  if (s.has_buffer_max_bytes() && s.buffer_max_bytes() < 1024 * 1024) {
    return absl::InvalidArgumentError("settings.buffer_max_bytes must be at least 1048576 (1 MiB)");
  }
  if (s.has_buffer_max_age_ms() && (s.buffer_max_age_ms() < 60000 || s.buffer_max_age_ms() > kMaxBufferAgeMs)) {
    return absl::InvalidArgumentError("settings.buffer_max_age_ms must be 60000 to 31536000000 (a year)");
  }
  if (s.has_buffer_full_policy() && s.buffer_full_policy() != "drop-oldest" && s.buffer_full_policy() != "refuse-new") {
    return absl::InvalidArgumentError("settings.buffer_full_policy must be drop-oldest or refuse-new");
  }
  if (s.has_unknown_devices() && s.unknown_devices() != "register" && s.unknown_devices() != "reject") {
    return absl::InvalidArgumentError("settings.unknown_devices must be register or reject");
  }
  return absl::OkStatus();
}

}  // namespace strata
