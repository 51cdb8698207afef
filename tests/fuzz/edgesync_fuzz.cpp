// libFuzzer target: what the edge hub does with an EdgeSync message off the wire before any
// storage: parse, check the batch frame, check each reading against the telemetry model.
// Checks never crash, and a reading they accept is one both storage backends take.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "services/edge_hub.h"
#include "storage/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  strata::v1::EdgeMessage m;
  if (!m.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!m.has_batch()) return 0;
  const auto& batch = m.batch();
  if (!strata::services::ValidateBatchFrame(batch).ok()) return 0;
  strata::v1::TelemetryBatch kept;
  kept.set_first_seq(batch.first_seq());
  kept.set_last_seq(batch.last_seq());
  for (const auto& r : batch.readings()) {
    if (strata::services::CheckEdgeReading(r).ok()) *kept.add_readings() = r;
  }
  // What the hub passes to storage, storage's own checks accept.
  if (!strata::storage::ValidateBatch(kept).ok()) std::abort();
  return 0;
}
