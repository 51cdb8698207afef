#include <strata/metrics.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace strata {
namespace {

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string LabelKey(const Labels& labels) {
  if (labels.empty()) return {};
  std::string s = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) s += ',';
    s += labels[i].first + "=\"" + EscapeLabelValue(labels[i].second) + "\"";
  }
  return s + "}";
}

void AppendNumber(std::ostringstream& out, double v) {
  if (std::isnan(v)) {
    out << "NaN";
  } else if (std::isinf(v)) {
    out << (v > 0 ? "+Inf" : "-Inf");
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    out << static_cast<long long>(v);
  } else {
    out << v;
  }
}

}  // namespace

void Gauge::Add(double d) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

MetricsRegistry::Family& MetricsRegistry::FamilyFor(const std::string& name, const std::string& help,
                                                    const char* type) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.help = help;
    it->second.type = type;
  } else if (it->second.type != type) {
    // A programming error: one name registered as two metric types.
    throw std::logic_error("metric " + name + " registered as both " + it->second.type + " and " + type);
  }
  return it->second;
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, help, "counter").counters[LabelKey(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, help, "gauge").gauges[LabelKey(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

void MetricsRegistry::AddCallbackGauge(const std::string& name, const std::string& help,
                                       std::function<double()> fn, const Labels& labels) {
  std::lock_guard lock(mu_);
  FamilyFor(name, help, "gauge").callbacks[LabelKey(labels)] = std::move(fn);
}

std::string MetricsRegistry::Render() const {
  std::ostringstream out;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) {
    out << "# HELP " << name << ' ' << family.help << "\n# TYPE " << name << ' ' << family.type << '\n';
    for (const auto& [labels, c] : family.counters) out << name << labels << ' ' << c->Value() << '\n';
    for (const auto& [labels, g] : family.gauges) {
      out << name << labels << ' ';
      AppendNumber(out, g->Value());
      out << '\n';
    }
    for (const auto& [labels, fn] : family.callbacks) {
      out << name << labels << ' ';
      AppendNumber(out, fn());
      out << '\n';
    }
  }
  return out.str();
}

}  // namespace strata
