// How strata-sim's devices answer commands (the device side of docs/api.md, "Commands: what
// a device implements"). Pure: the publisher parses the topic and publishes the reply.
//
// Rules, so that every end of the lifecycle can be watched in the local run:
//   name "noreply", or any command to a transportation device: no reply (ends TIMED_OUT);
//   name "fail", or any command but "ping" to a grid device: FAILED, with a reason;
//   anything else: SUCCEEDED, echoing the device, the name and the params.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "scenario.h"

namespace strata::sim {

// The reply payload ({"status":..., "result":...}), or nullopt for no reply.
std::optional<std::string> CommandReply(Scenario scenario, std::string_view device_id, std::string_view payload);

}  // namespace strata::sim
