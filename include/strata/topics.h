// The MQTT topics of the device contract (docs/api.md), in one place for the edge agent and
// strata-sim: {prefix}/{device_id}/telemetry up, {prefix}/{device_id}/commands/{command_id}
// down, and the device's reply on .../commands/{command_id}/response; the twin's
// {prefix}/{device_id}/desired down and {prefix}/{device_id}/reported up. Header-only.
#pragma once

#include <string>
#include <string_view>

namespace strata::topics {

inline std::string CommandTopic(std::string_view prefix, std::string_view device_id, std::string_view command_id) {
  std::string t(prefix);
  t.append("/").append(device_id).append("/commands/").append(command_id);
  return t;
}

// Splits {prefix}/{device_id}/commands/{command_id}, or with `response` its reply topic
// .../response; false when `topic` is not one (each id is one non-empty segment).
inline bool ParseCommandTopic(std::string_view prefix, std::string_view topic, bool response, std::string& device_id,
                              std::string& command_id) {
  if (topic.size() <= prefix.size() + 1 || topic.substr(0, prefix.size()) != prefix || topic[prefix.size()] != '/') {
    return false;
  }
  std::string_view rest = topic.substr(prefix.size() + 1);
  if (response) {
    constexpr std::string_view kTail = "/response";
    if (rest.size() <= kTail.size() || rest.substr(rest.size() - kTail.size()) != kTail) return false;
    rest.remove_suffix(kTail.size());
  }
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  const std::string_view device = rest.substr(0, slash);
  rest.remove_prefix(slash + 1);
  constexpr std::string_view kMiddle = "commands/";
  if (rest.substr(0, kMiddle.size()) != kMiddle) return false;
  rest.remove_prefix(kMiddle.size());
  if (rest.empty() || rest.find('/') != std::string_view::npos) return false;
  device_id.assign(device);
  command_id.assign(rest);
  return true;
}

// {prefix}/{device_id}/{leaf}, e.g. leaf "desired".
inline std::string DeviceTopic(std::string_view prefix, std::string_view device_id, std::string_view leaf) {
  std::string t(prefix);
  t.append("/").append(device_id).append("/").append(leaf);
  return t;
}

// Splits {prefix}/{device_id}/{leaf}; false when `topic` is not one (the id is one non-empty
// segment).
inline bool ParseDeviceTopic(std::string_view prefix, std::string_view topic, std::string_view leaf,
                             std::string& device_id) {
  if (topic.size() <= prefix.size() + leaf.size() + 2 || topic.substr(0, prefix.size()) != prefix ||
      topic[prefix.size()] != '/') {
    return false;
  }
  std::string_view rest = topic.substr(prefix.size() + 1);
  if (rest.substr(rest.size() - leaf.size()) != leaf || rest[rest.size() - leaf.size() - 1] != '/') return false;
  rest.remove_suffix(leaf.size() + 1);
  if (rest.empty() || rest.find('/') != std::string_view::npos) return false;
  device_id.assign(rest);
  return true;
}

}  // namespace strata::topics
