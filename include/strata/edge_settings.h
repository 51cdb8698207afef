// The settings of an edge that the cloud manages (strata.v1.EdgeSettings), checked the same
// way where they are set (the registry) and where they are applied (the edge's config store).
// Header-only.
#pragma once

#include <absl/status/status.h>

#include "strata/v1/registry.pb.h"

namespace strata {

// The ranges the agent's flags take (edge-agent/main.cpp).
inline absl::Status ValidateEdgeSettings(const v1::EdgeSettings& s) {
  if (s.has_batch_max() && (s.batch_max() < 1 || s.batch_max() > 50000)) {
    return absl::InvalidArgumentError("settings.batch_max must be 1 to 50000");
  }
  if (s.has_batch_linger_ms() && s.batch_linger_ms() > 60000) {
    return absl::InvalidArgumentError("settings.batch_linger_ms must be 0 to 60000");
  }
  if (s.has_buffer_max_bytes() && s.buffer_max_bytes() < 1024 * 1024) {
    return absl::InvalidArgumentError("settings.buffer_max_bytes must be at least 1048576 (1 MiB)");
  }
  if (s.has_buffer_max_age_ms() && s.buffer_max_age_ms() < 60000) {
    return absl::InvalidArgumentError("settings.buffer_max_age_ms must be at least 60000");
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
