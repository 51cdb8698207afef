#include "responder.h"

namespace strata::sim {

std::optional<std::string> CommandReply(Scenario scenario, std::string_view device_id, std::string_view payload) {
  auto command = nlohmann::json::parse(payload, nullptr, false);
  if (command.is_discarded() || !command.is_object()) {
    return nlohmann::json{{"status", "FAILED"}, {"result", {{"reason", "the command is not a JSON object"}}}}.dump();
  }
  const std::string name = command.contains("name") && command["name"].is_string() ? command["name"].get<std::string>()
                                                                                     : std::string();
  if (name == "noreply" || scenario == Scenario::kTransportation) return std::nullopt;
  if (name == "fail" || (scenario == Scenario::kGrid && name != "ping")) {
    return nlohmann::json{{"status", "FAILED"},
                          {"result", {{"reason", name == "fail" ? "simulated failure"
                                                                : "grid equipment takes no remote commands but ping"}}}}
        .dump();
  }
  nlohmann::json result = {{"device_id", device_id}, {"name", name}};
  if (command.contains("params")) result["params"] = command["params"];
  return nlohmann::json{{"status", "SUCCEEDED"}, {"result", result}}.dump();
}

std::optional<std::string> TwinReport(Scenario scenario, std::string_view payload) {
  if (scenario == Scenario::kTransportation) return std::nullopt;
  auto doc = nlohmann::json::parse(payload, nullptr, false);
  if (!doc.is_object() || !doc.contains("desired") || !doc["desired"].is_object() || !doc.contains("version") ||
      !doc["version"].is_number_integer()) {
    return std::nullopt;
  }
  nlohmann::json reported = doc["desired"];
  reported["applied_version"] = doc["version"];
  return reported.dump();
}

}  // namespace strata::sim
