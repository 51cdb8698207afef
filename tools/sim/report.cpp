#include "report.h"

namespace strata::sim {

Report::Report(std::vector<Device> devices) : devices_(std::move(devices)), by_device_(devices_.size()) {}

void Report::Delivered(std::size_t device, std::optional<MalformedKind> malformed, std::size_t readings) {
  PerDevice& d = by_device_.at(device);
  if (malformed) {
    ++malformed_;
    ++d.malformed;
    ++by_kind_[static_cast<std::size_t>(*malformed)];
  } else {
    ++good_;
    ++d.good;
    d.readings += readings;
    readings_ += readings;
  }
}

nlohmann::json Report::ToJson(const nlohmann::json& extra) const {
  nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
  j["published"] = published();
  j["good"] = good_;
  j["malformed"] = malformed_;
  j["readings"] = readings_;
  j["sent"] = sent_;
  j["failed"] = failed_;
  j["unconfirmed"] = sent_ - published() - failed_;
  nlohmann::json kinds = nlohmann::json::object();
  for (MalformedKind k : kAllMalformedKinds) kinds[std::string(MalformedKindName(k))] = by_kind_[static_cast<std::size_t>(k)];
  j["malformed_by_kind"] = std::move(kinds);
  nlohmann::json devices = nlohmann::json::object();
  for (std::size_t i = 0; i < devices_.size(); ++i) {
    const PerDevice& d = by_device_[i];
    devices[devices_[i].id] = {{"scenario", std::string(ScenarioName(devices_[i].scenario))},
                               {"published", d.good + d.malformed},
                               {"good", d.good},
                               {"malformed", d.malformed},
                               {"readings", d.readings}};
  }
  j["by_device"] = std::move(devices);
  return j;
}

}  // namespace strata::sim
