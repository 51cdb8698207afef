// libFuzzer target: the YAML config loader (--config FILE) that both binaries use. A broken
// file is a clear CLI11 parse error, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include <strata/config.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  CLI::App app{"fuzz"};
  strata::UseYamlConfig(app);
  std::string s;
  int n = 0;
  app.add_option("--name", s);
  app.add_option("--count", n);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    auto items = app.get_config_formatter()->from_config(in);
    (void)items;
  } catch (const CLI::ParseError&) {
    // the loader's clear error
  } catch (const std::exception&) {
    // yaml-cpp's conversions (e.g. a key that is not a scalar) surface as exceptions too
  }
  try {
    (void)strata::ParseHostPort(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const CLI::ValidationError&) {
  }
  return 0;
}
