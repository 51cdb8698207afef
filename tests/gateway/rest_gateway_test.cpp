// The REST gateway over real sockets: a Beast HTTP client in the test, the gateway on a free
// port, and an in-process gRPC server (on a free port) running a small test implementation of
// our own strata.v1.DeviceRegistry behind it.
#include "gateway/rest_gateway.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "strata/v1/registry.grpc.pb.h"

namespace strata::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;

constexpr auto kClientTimeout = std::chrono::seconds(10);

// GetDevice knows "d1"; "slow" waits until the test releases it; anything else is NOT_FOUND.
// CreateDevice echoes the device with the tenant filled in.
class TestRegistry final : public v1::DeviceRegistry::Service {
 public:
  grpc::Status GetDevice(grpc::ServerContext*, const v1::GetDeviceRequest* request, v1::Device* response) override {
    if (request->device_id() == "slow") {
      std::unique_lock<std::mutex> lock(mu_);
      slow_entered_ = true;
      cv_.notify_all();
      // Bounded so that a failing test cannot hang the server.
      cv_.wait_for(lock, std::chrono::seconds(20), [&] { return slow_released_; });
    } else if (request->device_id() != "d1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "device \"" + request->device_id() + "\" not found");
    }
    response->set_device_id(request->device_id());
    response->set_tenant_id("default");
    response->set_name("Pump");
    response->set_created_at(1700000000000);
    return grpc::Status::OK;
  }

  grpc::Status CreateDevice(grpc::ServerContext*, const v1::CreateDeviceRequest* request,
                            v1::Device* response) override {
    if (request->device().device_id().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "device.device_id is required");
    }
    *response = request->device();
    response->set_tenant_id("default");
    return grpc::Status::OK;
  }

  bool WaitSlowEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kClientTimeout, [&] { return slow_entered_; });
  }
  void ReleaseSlow() {
    std::lock_guard<std::mutex> lock(mu_);
    slow_released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool slow_entered_ = false;   // guarded by mu_
  bool slow_released_ = false;  // guarded by mu_
};

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string allow;
  bool keep_alive = false;

  nlohmann::json Json() const { return nlohmann::json::parse(body); }
};

// One keep-alive HTTP/1.1 connection. Every operation runs with a deadline, so a broken server
// fails the test instead of hanging it.
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port) : stream_(ioc_) {
    stream_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }

  Reply Send(http::verb method, const std::string& target, const std::string& body = "") {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    return RoundTrip(req);
  }

  Reply RoundTrip(http::request<http::string_body>& req) {
    beast::error_code write_ec, read_ec;
    bool read_done = false;
    http::response<http::string_body> res;
    http::async_write(stream_, req, [&](beast::error_code ec, std::size_t) {
      write_ec = ec;
      // Read even if the write failed part-way: the server may have answered early (413).
      http::async_read(stream_, buffer_, res, [&](beast::error_code ec2, std::size_t) {
        read_ec = ec2;
        read_done = true;
      });
    });
    Run();
    if (!read_done) throw std::runtime_error("no HTTP response within the deadline");
    if (read_ec) throw beast::system_error(read_ec);
    Reply reply;
    reply.status = static_cast<int>(res.result_int());
    reply.body = res.body();
    reply.content_type = std::string(res[http::field::content_type]);
    reply.allow = std::string(res[http::field::allow]);
    reply.keep_alive = res.keep_alive();
    return reply;
  }

  // A POST with "Expect: 100-continue": returns the interim status the server sent before the
  // body was written, and the final reply.
  std::pair<int, Reply> SendExpectingContinue(const std::string& target, const std::string& body) {
    const std::string head = "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                             "Content-Length: " + std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n\r\n";
    beast::error_code ec;
    std::optional<int> interim;
    http::response<http::empty_body> interim_response;
    net::async_write(stream_, net::buffer(head), [&](beast::error_code e, std::size_t) {
      ec = e;
      if (e) return;
      http::async_read(stream_, buffer_, interim_response, [&](beast::error_code e2, std::size_t) {
        ec = e2;
        if (!e2) interim = static_cast<int>(interim_response.result_int());
      });
    });
    Run();
    if (ec || !interim) throw std::runtime_error("no interim response: " + ec.message());
    bool written = false;
    net::async_write(stream_, net::buffer(body), [&](beast::error_code e, std::size_t) { written = !e; });
    Run();
    if (!written) throw std::runtime_error("cannot write the body");
    http::response<http::string_body> res;
    bool read = false;
    http::async_read(stream_, buffer_, res, [&](beast::error_code e, std::size_t) { read = !e; });
    Run();
    if (!read) throw std::runtime_error("no final response");
    Reply reply;
    reply.status = static_cast<int>(res.result_int());
    reply.body = res.body();
    reply.keep_alive = res.keep_alive();
    return {*interim, reply};
  }

  // Writes raw bytes and reads one reply.
  Reply SendRaw(const std::string& bytes) {
    bool written = false;
    net::async_write(stream_, net::buffer(bytes), [&](beast::error_code e, std::size_t) { written = !e; });
    Run();
    if (!written) throw std::runtime_error("cannot write");
    http::response<http::string_body> res;
    beast::error_code ec = net::error::timed_out;
    http::async_read(stream_, buffer_, res, [&](beast::error_code e, std::size_t) { ec = e; });
    Run();
    if (ec) throw beast::system_error(ec);
    Reply reply;
    reply.status = static_cast<int>(res.result_int());
    reply.body = res.body();
    reply.keep_alive = res.keep_alive();
    return reply;
  }

  // True when the server closes the connection (EOF) within the deadline.
  bool ServerCloses() {
    bool closed = false;
    char byte;
    stream_.expires_after(kClientTimeout);
    stream_.async_read_some(net::buffer(&byte, 1), [&](beast::error_code ec, std::size_t) {
      closed = ec == net::error::eof || ec == net::error::connection_reset;
    });
    Run();
    return closed;
  }

 private:
  void Run() {
    ioc_.restart();
    ioc_.run_for(kClientTimeout);
  }

  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

class RestGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int grpc_port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &grpc_port);
    builder.RegisterService(&registry_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(grpc_port, 0);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port), grpc::InsecureChannelCredentials());

    RestGatewayOptions options;
    options.port = 0;
    options.threads = 2;
    options.max_body_bytes = 64 * 1024;
    HttpHooks hooks{[] { return std::string("strata_test_requests_total 7\n"); }, [this] { return ready_.load(); }};
    auto gateway = RestGateway::Create(
        options, channel, {"strata.v1.DeviceRegistry", "strata.v1.Telemetry", "strata.v1.EdgeSync"}, hooks);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    ASSERT_NE(gateway_->Port(), 0);
  }

  void TearDown() override {
    registry_.ReleaseSlow();
    if (gateway_) gateway_->Shutdown();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  Reply Get(const std::string& target) { return HttpConnection(gateway_->Port()).Send(http::verb::get, target); }

  TestRegistry registry_;
  std::atomic<bool> ready_{true};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RestGateway> gateway_;
};

TEST_F(RestGatewayTest, GetReturnsCanonicalJson) {
  Reply r = Get("/v1/devices/d1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  auto body = r.Json();
  EXPECT_EQ(body["device_id"], "d1");
  EXPECT_EQ(body["name"], "Pump");
  EXPECT_EQ(body["created_at"], "1700000000000");
  EXPECT_EQ(body["edge_id"], "");  // defaults printed
  EXPECT_TRUE(body["labels"].is_object());
}

TEST_F(RestGatewayTest, GrpcErrorsMapToHttpWithJsonBody) {
  Reply r = Get("/v1/devices/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  auto body = r.Json();
  EXPECT_EQ(body["error"]["code"], 404);
  EXPECT_EQ(body["error"]["status"], "NOT_FOUND");
  EXPECT_EQ(body["error"]["message"], "device \"nope\" not found");

  // The service's own INVALID_ARGUMENT.
  r = HttpConnection(gateway_->Port()).Send(http::verb::post, "/v1/devices", R"({"name":"no id"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Json()["error"]["message"], "device.device_id is required");

  // Telemetry is routed but not served by this gRPC server: UNIMPLEMENTED from gRPC is 501.
  r = Get("/v1/devices/d1/telemetry/latest");
  EXPECT_EQ(r.status, 501);
  EXPECT_EQ(r.Json()["error"]["status"], "UNIMPLEMENTED");
}

TEST_F(RestGatewayTest, PostEchoesAndRejectsMalformedJson) {
  HttpConnection c(gateway_->Port());
  Reply r = c.Send(http::verb::post, "/v1/devices", R"({"device_id":"d9","name":"Fan","labels":{"site":"berlin"}})");
  EXPECT_EQ(r.status, 200);
  auto body = r.Json();
  EXPECT_EQ(body["device_id"], "d9");
  EXPECT_EQ(body["tenant_id"], "default");
  EXPECT_EQ(body["labels"]["site"], "berlin");

  r = c.Send(http::verb::post, "/v1/devices", R"({"device_id": "d9",)");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Json()["error"]["status"], "INVALID_ARGUMENT");
  EXPECT_TRUE(r.keep_alive);  // a bad body does not cost the connection

  r = c.Send(http::verb::post, "/v1/devices", R"({"device_id": 5})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), HasSubstr("device_id"));
}

TEST_F(RestGatewayTest, RoutingErrors) {
  Reply r = Get("/v1/nothing/here");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Json()["error"]["code"], 404);

  r = HttpConnection(gateway_->Port()).Send(http::verb::put, "/v1/devices/d1", "{}");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "GET, PATCH, DELETE");
  EXPECT_EQ(r.Json()["error"]["code"], 405);

  r = HttpConnection(gateway_->Port()).Send(http::verb::post, "/v1/edgesync:connect", "{}");
  EXPECT_EQ(r.status, 501);
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), HasSubstr("gRPC only"));

  r = Get("/v1/devices/d1/telemetry?limit=lots");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.Json()["error"]["message"].get<std::string>(), HasSubstr("limit"));

  r = HttpConnection(gateway_->Port()).Send(http::verb::delete_, "/healthz");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "GET");
}

TEST_F(RestGatewayTest, BuiltInRoutes) {
  Reply r = Get("/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["status"], "ok");

  EXPECT_EQ(Get("/readyz").status, 200);
  ready_ = false;
  r = Get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Json()["error"]["status"], "UNAVAILABLE");

  r = Get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4");
  EXPECT_EQ(r.body, "strata_test_requests_total 7\n");

  r = Get("/openapi.json");
  EXPECT_EQ(r.status, 200);
  auto doc = r.Json();
  EXPECT_EQ(doc["openapi"], "3.0.3");
  EXPECT_TRUE(doc["paths"].contains("/v1/devices/{device_id}"));
  EXPECT_TRUE(doc["paths"].contains("/v1/devices/{device_id}/telemetry"));
}

TEST_F(RestGatewayTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  HttpConnection c(gateway_->Port());
  Reply first = c.Send(http::verb::get, "/v1/devices/d1");
  EXPECT_EQ(first.status, 200);
  EXPECT_TRUE(first.keep_alive);
  Reply second = c.Send(http::verb::get, "/v1/devices/nope");
  EXPECT_EQ(second.status, 404);
  EXPECT_TRUE(second.keep_alive);
  Reply third = c.Send(http::verb::get, "/healthz");
  EXPECT_EQ(third.status, 200);
}

TEST_F(RestGatewayTest, MalformedHttpIs400AndClosesTheConnection) {
  HttpConnection c(gateway_->Port());
  Reply r = c.SendRaw("NOT AN HTTP REQUEST\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Json()["error"]["status"], "INVALID_ARGUMENT");
  EXPECT_TRUE(c.ServerCloses());
  EXPECT_EQ(Get("/healthz").status, 200);
}

TEST_F(RestGatewayTest, ExpectContinueGetsAnInterimResponse) {
  HttpConnection c(gateway_->Port());
  auto [interim, reply] = c.SendExpectingContinue("/v1/devices", R"({"device_id":"d7"})");
  EXPECT_EQ(interim, 100);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.Json()["device_id"], "d7");
}

TEST_F(RestGatewayTest, OversizedBodyIs413AndClosesTheConnection) {
  HttpConnection c(gateway_->Port());
  const std::string big = "[" + std::string(100 * 1024, ' ') + "]";  // over the 64 KiB limit
  Reply r = c.Send(http::verb::post, "/v1/devices/d1/telemetry", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.Json()["error"]["code"], 413);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(c.ServerCloses());

  // The gateway is unaffected.
  EXPECT_EQ(Get("/v1/devices/d1").status, 200);
}

TEST_F(RestGatewayTest, ShutdownLetsInFlightRequestsFinish) {
  std::promise<Reply> reply;
  std::thread client([&] {
    try {
      reply.set_value(HttpConnection(gateway_->Port()).Send(http::verb::get, "/v1/devices/slow"));
    } catch (...) {
      reply.set_exception(std::current_exception());
    }
  });
  ASSERT_TRUE(registry_.WaitSlowEntered());
  // An idle keep-alive connection must not hold the shutdown up.
  HttpConnection idle(gateway_->Port());
  EXPECT_EQ(idle.Send(http::verb::get, "/healthz").status, 200);

  auto shutdown = std::async(std::launch::async, [&] { gateway_->Shutdown(); });
  // Shutdown waits for the call in flight.
  EXPECT_EQ(shutdown.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  registry_.ReleaseSlow();
  ASSERT_EQ(shutdown.wait_for(std::chrono::seconds(15)), std::future_status::ready);
  shutdown.get();
  client.join();

  Reply r = reply.get_future().get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["device_id"], "slow");
  EXPECT_FALSE(r.keep_alive);  // answered during shutdown: the connection closes

  EXPECT_TRUE(idle.ServerCloses());
  EXPECT_THROW(HttpConnection{gateway_->Port()}, beast::system_error);  // no longer accepting
  gateway_->Shutdown();  // idempotent
}

TEST_F(RestGatewayTest, ShutdownWhenIdleIsQuick) {
  EXPECT_EQ(Get("/healthz").status, 200);
  const auto start = std::chrono::steady_clock::now();
  gateway_->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(RestGatewayCreateTest, Errors) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  RestGatewayOptions options;
  options.port = 0;
  auto unknown = RestGateway::Create(options, channel, {"strata.v1.Nope"}, {});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);

  auto first = RestGateway::Create(options, channel, {"strata.v1.DeviceRegistry"}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  options.port = (*first)->Port();
  auto second = RestGateway::Create(options, channel, {"strata.v1.DeviceRegistry"}, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);

  // With no gRPC server behind the channel a call is UNAVAILABLE: 503. Hooks left empty are
  // ready and serve empty metrics.
  HttpConnection c((*first)->Port());
  Reply r = c.Send(http::verb::get, "/v1/devices/d1");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(c.Send(http::verb::get, "/readyz").status, 200);
  EXPECT_EQ(c.Send(http::verb::get, "/metrics").body, "");
}

}  // namespace
}  // namespace strata::gateway
