// Process-wide logging set-up: spdlog to stderr, as plain text or one JSON object per line.
#pragma once

#include <string>

namespace strata {

// level: trace, debug, info, warn, error. format: "text" or "json". Throws
// std::invalid_argument on an unknown value (start-up misconfiguration).
void ConfigureLogging(const std::string& level, const std::string& format);

}  // namespace strata
