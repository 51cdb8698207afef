// Command-line, YAML file and environment configuration for Strata's binaries.
//
// Each binary declares its flags with CLI11 and calls UseYamlConfig(app): `--config FILE`
// then reads a YAML mapping whose keys are the long flag names (`grpc-listen: 0.0.0.0:7000`),
// and every flag can also come from the environment variable named in its --help.
// Precedence (CLI11's): command line, then config file, then environment, then default.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace strata {

// Installs the YAML reader and the `--config` option on `app`.
void UseYamlConfig(CLI::App& app);

// "grpc-listen" -> "STRATA_GRPC_LISTEN": the environment variable of a flag.
std::string EnvName(const std::string& flag);

// Adds `--NAME` bound to `value`, read also from the environment variable EnvName(NAME),
// with its default shown in --help. One definition per flag for command line, env and file.
template <typename T>
CLI::Option* AddFlag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return app.add_option("--" + name, value, help)->envname(EnvName(name))->capture_default_str();
}

// Splits "host:port" (or "[v6]:port"); throws CLI::ValidationError on a malformed address.
struct HostPort {
  std::string host;
  unsigned short port = 0;
};
HostPort ParseHostPort(const std::string& s);

}  // namespace strata
