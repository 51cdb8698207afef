// What a strata-sim run sent, counted by delivery outcome, so a test can check a receiver
// against it exactly. Written as JSON at exit (--report FILE).
#pragma once

#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "generator.h"

namespace strata::sim {

// Not thread-safe: the caller serialises access.
class Report {
 public:
  explicit Report(std::vector<Device> devices);

  // A message was handed to the client.
  void Sent() { ++sent_; }
  // The broker confirmed it (QoS 1) or it was written to the socket (QoS 0).
  void Delivered(std::size_t device, std::optional<MalformedKind> malformed, std::size_t readings);
  void Failed() { ++failed_; }

  std::uint64_t published() const { return good_ + malformed_; }
  std::uint64_t sent() const { return sent_; }
  std::uint64_t failed() const { return failed_; }

  // {"published": N, "good": G, "malformed": M, "readings": R, "sent": S, "failed": F,
  //  "unconfirmed": S - N - F, "malformed_by_kind": {...},
  //  "by_device": {"mfg-0001": {"scenario": .., "published": .., "good": .., "malformed": ..,
  //                             "readings": ..}, ...}}
  // `extra` members (seed, rates, ...) are merged in at the top level.
  nlohmann::json ToJson(const nlohmann::json& extra = nlohmann::json::object()) const;

 private:
  struct PerDevice {
    std::uint64_t good = 0, malformed = 0, readings = 0;
  };
  std::vector<Device> devices_;
  std::vector<PerDevice> by_device_;
  std::uint64_t by_kind_[std::size(kAllMalformedKinds)] = {};
  std::uint64_t sent_ = 0, failed_ = 0, good_ = 0, malformed_ = 0, readings_ = 0;
};

}  // namespace strata::sim
