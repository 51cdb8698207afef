// A running strata-cloud process for end-to-end tests, on the embedded SQLite database or on
// the harness's real PostgreSQL, reachable over gRPC and REST on free ports.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/http_client.h"
#include "support/process.h"

namespace strata::testing {

class CloudProcess {
 public:
  // Starts strata-cloud on `database_url` and waits until /readyz answers 200.
  CloudProcess(const std::string& database_url, const std::string& workdir, std::vector<std::string> extra_args = {});
  ~CloudProcess();

  // Graceful stop (SIGTERM); returns the exit status.
  int Stop();
  // Starts again on the same database and ports.
  void Restart(std::vector<std::string> extra_args = {});

  Process& process() { return *process_; }
  std::shared_ptr<grpc::Channel> Channel() const;
  std::string GrpcAddress() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  HttpResponse Http(const std::string& method, const std::string& target, const std::string& body = "") const;
  // Parses the body as JSON; fails the test (and returns null) if it is not.
  nlohmann::json Json(const HttpResponse& r) const;
  bool WaitReady();

 private:
  void Start(std::vector<std::string> extra_args);

  std::string url_;
  std::string workdir_;
  unsigned short grpc_port_;
  unsigned short http_port_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

// Value-parameterized on the backend: "sqlite" or "postgresql".
class CloudTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  std::string DatabaseUrl() const { return url_; }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<CloudProcess> cloud_;
};

// Percent-encodes a path segment.
std::string UrlEncode(const std::string& s);

}  // namespace strata::testing
