#include <strata/config.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <istream>
#include <memory>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace strata {
namespace {

// CLI11 reads config files through a Config object that turns them into flat items.
class YamlConfig final : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool /*write_description*/,
                        std::string /*prefix*/) const override {
    YAML::Emitter out;
    out << YAML::BeginMap;
    for (const CLI::Option* opt : app->get_options()) {
      if (opt->get_lnames().empty() || !opt->get_configurable()) continue;
      std::string value;
      if (opt->count() > 0) {
        value = opt->as<std::string>();
      } else if (default_also) {
        value = opt->get_default_str();
      } else {
        continue;
      }
      out << YAML::Key << opt->get_lnames().front() << YAML::Value << value;
    }
    out << YAML::EndMap;
    return out.c_str();
  }

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items;
    YAML::Node root;
    try {
      root = YAML::Load(input);
    } catch (const YAML::Exception& e) {
      throw CLI::ParseError("config file is not valid YAML: " + std::string(e.what()), CLI::ExitCodes::ConversionError);
    }
    if (root.IsNull()) return items;
    if (!root.IsMap()) throw CLI::ParseError("config file must be a YAML mapping", CLI::ExitCodes::ConversionError);
    Flatten(root, {}, items);
    return items;
  }

 private:
  static void Flatten(const YAML::Node& map, const std::vector<std::string>& parents,
                      std::vector<CLI::ConfigItem>& items) {
    for (const auto& kv : map) {
      CLI::ConfigItem item;
      item.parents = parents;
      item.name = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (v.IsMap()) {
        auto nested = parents;
        nested.push_back(item.name);
        Flatten(v, nested, items);
        continue;
      }
      if (v.IsSequence()) {
        for (const auto& e : v) item.inputs.push_back(e.as<std::string>());
      } else if (v.IsScalar()) {
        item.inputs.push_back(v.as<std::string>());
      }
      items.push_back(std::move(item));
    }
  }
};

}  // namespace

std::string EnvName(const std::string& flag) {
  std::string env = "STRATA_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

void UseYamlConfig(CLI::App& app) {
  app.config_formatter(std::make_shared<YamlConfig>());
  // A key that is no flag is an error naming it (CLI11 ignores it by default: a typo in a
  // gateway's config would go unnoticed).
  app.allow_config_extras(CLI::config_extras_mode::error);
  // CLI11 2.1 (Debian 12) does not read a config option's environment variable: STRATA_CONFIG
  // becomes the option's default file instead (required then, so a name that is wrong is an
  // error, not silently no file); --config on the command line still wins.
  const char* from_env = std::getenv("STRATA_CONFIG");
  const bool named = from_env != nullptr && *from_env != '\0';
  app.set_config("--config", named ? from_env : "", "YAML file of flag values (keys are long flag names; or STRATA_CONFIG)",
                 named);
}

HostPort ParseHostPort(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 == s.size()) {
    throw CLI::ValidationError("address", "expected HOST:PORT, got '" + s + "'");
  }
  HostPort hp;
  hp.host = s.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  const std::string port = s.substr(colon + 1);
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    throw CLI::ValidationError("address", "invalid port in '" + s + "'");
  }
  hp.port = static_cast<unsigned short>(value);
  return hp;
}

}  // namespace strata
