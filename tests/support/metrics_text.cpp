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

double MetricTotal(const std::string& body, const std::string& name) {
  std::istringstream in(body);
  std::string line;
  double total = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
    const char next = line[name.size()];
    if (next != ' ' && next != '{') continue;  // another family sharing the prefix
    const auto space = line.rfind(' ');
    total += std::stod(line.substr(space + 1));
  }
  return total;
}

}  // namespace strata::testing
