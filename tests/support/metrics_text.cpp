#include "support/metrics_text.h"

#include <sstream>

namespace strata::testing {

double MetricSample(const std::string& body, const std::string& sample) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return -1;
}

}  // namespace strata::testing
