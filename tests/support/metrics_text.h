// Test harness: reads one sample from a Prometheus text exposition (a process's /metrics).
#pragma once

#include <string>

namespace strata::testing {

// The value of `sample` (a metric name, or name{labels} exactly as rendered); -1 if absent.
double MetricSample(const std::string& body, const std::string& sample);

// The sum of every sample of the family `name` (the bare name and each name{labels}), e.g. a
// counter over all its reasons; 0 if there is none.
double MetricTotal(const std::string& body, const std::string& name);

}  // namespace strata::testing
