// How strata-sim's devices answer commands and desired twin documents (the device side of
// docs/api.md, "Commands: what a device implements" and "Device twins: what a device
// implements"). Pure: the publisher parses the topic and publishes the reply.
//
// Rules, so that every end of the lifecycle can be watched in the local run:
//   name "noreply", or any command to a transportation device: no reply (ends TIMED_OUT);
//   name "fail", or any command but "ping" to a grid device: FAILED, with a reason;
//   anything else: SUCCEEDED, echoing the device, the name and the params.
// Desired documents: a transportation device never reports (its difference stays); every
// other device applies the document and reports it, with "applied_version" set to its version.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "scenario.h"

namespace strata::sim {

// The reply payload ({"status":..., "result":...}), or nullopt for no reply.
std::optional<std::string> CommandReply(Scenario scenario, std::string_view device_id, std::string_view payload);

// The reported document for a {"version":N,"desired":{...}} message, or nullopt for none (a
// transportation device, an empty message clearing the document, or one that is not that).
std::optional<std::string> TwinReport(Scenario scenario, std::string_view payload);

}  // namespace strata::sim
