// Unit tests of strata::core: identifiers, metrics rendering, configuration.
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <strata/stop_signal.h>

#include <atomic>
#include <thread>

#include <strata/config.h>
#include <strata/ids.h>
#include <strata/metrics.h>
#include <strata/topics.h>

#include "support/process.h"

namespace strata {
namespace {

TEST(IdsTest, AcceptsOrdinaryAndQuotedIds) {
  EXPECT_TRUE(ValidateId("device_id", "pump-7").ok());
  EXPECT_TRUE(ValidateId("device_id", "it's \"quoted\"; DROP TABLE devices; --").ok());
  EXPECT_TRUE(ValidateId("device_id", std::string(kMaxIdBytes, 'a')).ok());
}

TEST(IdsTest, RejectsEmptyOverlongAndTopicCharacters) {
  auto empty = ValidateId("device_id", "");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("device_id"), std::string_view::npos);
  EXPECT_EQ(ValidateId("device_id", std::string(kMaxIdBytes + 1, 'a')).code(), absl::StatusCode::kInvalidArgument);
  for (const char* bad : {"a/b", "a+b", "a#b", "a\nb"}) {
    EXPECT_EQ(ValidateId("device_id", bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateKey("").ok());
  EXPECT_TRUE(ValidateKey("temperature").ok());
}

TEST(TopicsTest, CommandTopicsRoundTripAndStrangersAreRefused) {
  using strata::topics::CommandTopic;
  using strata::topics::ParseCommandTopic;
  EXPECT_EQ(CommandTopic("v1/devices", "pump-1", "abc"), "v1/devices/pump-1/commands/abc");
  std::string device, id;
  ASSERT_TRUE(ParseCommandTopic("v1/devices", "v1/devices/pump-1/commands/abc", false, device, id));
  EXPECT_EQ(device, "pump-1");
  EXPECT_EQ(id, "abc");
  ASSERT_TRUE(ParseCommandTopic("v1/devices", "v1/devices/pump-1/commands/abc/response", true, device, id));
  EXPECT_EQ(id, "abc");
  for (const char* bad : {"v1/devices/pump-1/commands/abc/response", "v1/devices//commands/abc", "v1/devices/p/commands/",
                          "v1/devices/p/telemetry", "v2/devices/p/commands/a", "v1/devicesX/p/commands/a",
                          "v1/devices/p/commands/a/b", "v1/devices"}) {
    EXPECT_FALSE(ParseCommandTopic("v1/devices", bad, false, device, id)) << bad;
  }
  for (const char* bad : {"v1/devices/p/commands/a", "v1/devices/p/commands/response", "v1/devices/p/commands//response",
                          "v1/devices/p/x/a/response", "/response"}) {
    EXPECT_FALSE(ParseCommandTopic("v1/devices", bad, true, device, id)) << bad;
  }
}

TEST(TopicsTest, DeviceTopicsRoundTripAndStrangersAreRefused) {
  using strata::topics::DeviceTopic;
  using strata::topics::ParseDeviceTopic;
  EXPECT_EQ(DeviceTopic("v1/devices", "pump-1", "desired"), "v1/devices/pump-1/desired");
  std::string device;
  ASSERT_TRUE(ParseDeviceTopic("v1/devices", "v1/devices/pump-1/reported", "reported", device));
  EXPECT_EQ(device, "pump-1");
  for (const char* bad : {"v1/devices//reported", "v1/devices/reported", "v1/devices/a/b/reported",
                          "v1/devices/p/reportedX", "v1/devices/p/xreported", "v2/devices/p/reported",
                          "v1/devicesX/p/reported", "v1/devices/p/desired", "reported", ""}) {
    EXPECT_FALSE(ParseDeviceTopic("v1/devices", bad, "reported", device)) << bad;
  }
}

TEST(MetricsTest, RendersCountersGaugesAndEscapedLabels) {
  MetricsRegistry m;
  m.GetCounter("strata_x_total", "X things", {{"reason", "bad \"json\""}}).Inc(3);
  m.GetCounter("strata_x_total", "X things", {{"reason", "bad \"json\""}}).Inc();
  m.GetGauge("strata_depth", "Depth").Set(2.5);
  m.AddCallbackGauge("strata_age_seconds", "Age", [] { return 7.0; });
  const std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE strata_x_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("strata_x_total{reason=\"bad \\\"json\\\"\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("strata_depth 2.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("strata_age_seconds 7\n"), std::string::npos) << text;
}

TEST(MetricsTest, OneNameCannotBeTwoTypes) {
  MetricsRegistry m;
  m.GetCounter("strata_a", "a");
  EXPECT_THROW(m.GetGauge("strata_a", "a"), std::logic_error);
}

TEST(ConfigTest, ParsesHostPort) {
  auto hp = ParseHostPort("127.0.0.1:7000");
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 7000);
  EXPECT_EQ(ParseHostPort("[::1]:80").host, "::1");
  EXPECT_THROW(ParseHostPort("nohost"), CLI::ValidationError);
  EXPECT_THROW(ParseHostPort("h:99999"), CLI::ValidationError);
}

TEST(ConfigTest, YamlFileEnvironmentAndCommandLinePrecedence) {
  testing::TempDir dir;
  const std::string file = dir.path() + "/c.yaml";
  std::ofstream(file) << "grpc-listen: 0.0.0.0:9000\nlog-level: debug\nkeys: [a, b]\n";
  auto parse = [&](std::vector<std::string> args) {
    CLI::App app;
    UseYamlConfig(app);
    std::string listen = "default", level = "info";
    std::vector<std::string> keys;
    app.add_option("--grpc-listen", listen)->envname(EnvName("grpc-listen"));
    app.add_option("--log-level", level)->envname(EnvName("log-level"));
    app.add_option("--keys", keys);
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    app.parse(static_cast<int>(argv.size()), argv.data());
    return std::make_tuple(listen, level, keys);
  };
  auto [listen, level, keys] = parse({"--config", file});
  EXPECT_EQ(listen, "0.0.0.0:9000");
  EXPECT_EQ(level, "debug");
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b"}));

  // CLI11's order: command line, then config file, then environment, then default.
  ::setenv("STRATA_GRPC_LISTEN", "1.2.3.4:1", 1);
  ::setenv("STRATA_LOG_LEVEL", "warn", 1);
  EXPECT_EQ(std::get<0>(parse({"--config", file})), "0.0.0.0:9000");
  EXPECT_EQ(std::get<0>(parse({})), "1.2.3.4:1");
  EXPECT_EQ(std::get<0>(parse({"--config", file, "--grpc-listen", "5.6.7.8:2"})), "5.6.7.8:2");
  ::unsetenv("STRATA_GRPC_LISTEN");
  ::unsetenv("STRATA_LOG_LEVEL");
}

TEST(ConfigTest, TheConfigFileMayBeNamedByStrataConfig) {
  // docs/operations.md: STRATA_CONFIG names the file when --config is not given.
  testing::TempDir dir;
  const std::string file = dir.path() + "/c.yaml", other = dir.path() + "/d.yaml";
  std::ofstream(file) << "log-level: debug\n";
  std::ofstream(other) << "log-level: error\n";
  auto parse = [&](std::vector<std::string> args) {
    CLI::App app;
    UseYamlConfig(app);
    std::string level = "info";
    app.add_option("--log-level", level)->envname(EnvName("log-level"));
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    app.parse(static_cast<int>(argv.size()), argv.data());
    return level;
  };
  ::setenv("STRATA_CONFIG", file.c_str(), 1);
  EXPECT_EQ(parse({}), "debug");
  EXPECT_EQ(parse({"--config", other}), "error") << "--config wins over the environment";
  ::setenv("STRATA_CONFIG", (dir.path() + "/missing.yaml").c_str(), 1);
  EXPECT_THROW(parse({}), CLI::ParseError) << "a file the environment names must exist";
  ::unsetenv("STRATA_CONFIG");
  EXPECT_EQ(parse({}), "info");
}

TEST(ConfigTest, AMisspeltKeyIsAnErrorNamingIt) {
  // A typo in a gateway's /etc/strata/edge.yaml must not be silently ignored.
  testing::TempDir dir;
  const std::string file = dir.path() + "/typo.yaml";
  std::ofstream(file) << "log-levle: debug\n";
  CLI::App app;
  UseYamlConfig(app);
  std::string level = "info";
  app.add_option("--log-level", level);
  std::string args[] = {"prog", "--config", file};
  char* argv[] = {args[0].data(), args[1].data(), args[2].data()};
  try {
    app.parse(3, argv);
    ADD_FAILURE() << "accepted a key that is no flag";
  } catch (const CLI::ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("log-levle"), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, MalformedYamlIsAClearError) {
  testing::TempDir dir;
  const std::string file = dir.path() + "/bad.yaml";
  std::ofstream(file) << "a: [unclosed\n";
  CLI::App app;
  UseYamlConfig(app);
  std::string args[] = {"prog", "--config", file};
  char* argv[] = {args[0].data(), args[1].data(), args[2].data()};
  EXPECT_THROW(app.parse(3, argv), CLI::ParseError);
}

}  // namespace
}  // namespace strata

namespace strata {
namespace {

TEST(StopSignalTest, StopEndsEveryWaitAtOnceAndNotifyRechecksThePredicate) {
  StopSignal stop;
  std::atomic<bool> flag{false};
  std::thread waker([&] {
    flag = true;
    stop.Notify();
  });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(stop.WaitFor(std::chrono::seconds(30), [&] { return flag.load(); })) << "woken, not stopped";
  waker.join();
  std::thread stopper([&] { EXPECT_TRUE(stop.Stop()); });
  EXPECT_TRUE(stop.WaitFor(std::chrono::seconds(30)));
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_FALSE(stop.Stop()) << "only the first call stops it";
  EXPECT_TRUE(stop.stopped());
  EXPECT_TRUE(stop.WaitFor(std::chrono::seconds(30))) << "a wait after the stop returns at once";
}

}  // namespace
}  // namespace strata
