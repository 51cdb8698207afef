#include "support/cloud_process.h"

#include <signal.h>

#include "support/pg_server.h"

namespace strata::testing {

CloudProcess::CloudProcess(const std::string& database_url, const std::string& workdir,
                           std::vector<std::string> extra_args)
    : url_(database_url), workdir_(workdir), grpc_port_(FreePort()), http_port_(FreePort()) {
  Start(std::move(extra_args));
}

CloudProcess::~CloudProcess() {
  if (process_ && process_->Running()) process_->Stop(SIGTERM);
}

void CloudProcess::Start(std::vector<std::string> extra_args) {
  std::vector<std::string> argv = {BinaryPath("strata-cloud"), "--database",   url_,
                                   "--grpc-listen",            GrpcAddress(),  "--http-listen",
                                   "127.0.0.1:" + std::to_string(http_port_), "--log-level", "debug"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const std::string log = workdir_ + "/strata-cloud." + std::to_string(++starts_) + ".log";
  process_ = std::make_unique<Process>(argv, log);
  ASSERT_TRUE(WaitReady()) << "strata-cloud did not become ready; log:\n" << process_->Log();
}

bool CloudProcess::WaitReady() {
  return WaitFor(
      [&] {
        if (!process_->Running()) return true;  // reported by the caller through the log
        try {
          return Http("GET", "/readyz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      std::chrono::seconds(30)) &&
         process_->Running();
}

int CloudProcess::Stop() { return process_->Stop(SIGTERM); }

void CloudProcess::Restart(std::vector<std::string> extra_args) {
  if (process_->Running()) process_->Stop(SIGTERM);
  Start(std::move(extra_args));
}

std::shared_ptr<grpc::Channel> CloudProcess::Channel() const {
  return grpc::CreateChannel(GrpcAddress(), grpc::InsecureChannelCredentials());
}

HttpResponse CloudProcess::Http(const std::string& method, const std::string& target, const std::string& body) const {
  return HttpRequest(method, "127.0.0.1", http_port_, target, body);
}

nlohmann::json CloudProcess::Json(const HttpResponse& r) const {
  auto j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.body;
  return j;
}

void CloudTest::SetUp() {
  if (GetParam() == "sqlite") {
    url_ = "sqlite://" + dir_.path() + "/strata.db";
  } else {
    url_ = SharedPgServer().CreateDatabase();
  }
  cloud_ = std::make_unique<CloudProcess>(url_, dir_.path());
}

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace strata::testing
