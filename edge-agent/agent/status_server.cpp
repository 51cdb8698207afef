#include "agent/status_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace strata::edge {
namespace {

constexpr int kClientTimeoutSeconds = 5;

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class StatusServerImpl final : public StatusServer {
 public:
  StatusServerImpl(Handler handler) : acceptor_(ioc_), handler_(std::move(handler)) {}
  ~StatusServerImpl() override { Stop(); }

  absl::Status Listen(const std::string& host, std::uint16_t port) {
    beast::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) return absl::InvalidArgumentError("invalid listen address " + host);
    tcp::endpoint ep(address, port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    // Stop() wakes accept() by connecting here: the loopback of the listening address's
    // family when it listens on every address.
    acceptor_address_ = address.is_unspecified()
                            ? (address.is_v6() ? asio::ip::address(asio::ip::address_v6::loopback())
                                               : asio::ip::address(asio::ip::address_v4::loopback()))
                            : address;
    thread_ = std::thread([this] { Serve(); });
    return absl::OkStatus();
  }

  std::uint16_t Port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    // The acceptor belongs to the serving thread until it is joined (closing it from here
    // while accept() runs is a data race, and close() does not always wake accept()): a
    // connection to ourselves wakes it, it sees stopped_ and returns.
    beast::error_code ec;
    {
      asio::io_context ioc;
      tcp::socket s(ioc);
      s.connect(tcp::endpoint(acceptor_address_, port_), ec);
    }
    if (thread_.joinable()) thread_.join();
    acceptor_.close(ec);
  }

 private:
  void Serve() {
    while (!stopped_) {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopped_) continue;
      // One client at a time: a client that sends nothing must not hold the port (nor Stop()).
      const timeval timeout{.tv_sec = kClientTimeoutSeconds, .tv_usec = 0};
      ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
      HandleOne(socket);
    }
  }

  void HandleOne(tcp::socket& socket) {
    beast::error_code ec;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::read(socket, buffer, req, ec);
    if (ec) return;
    HttpReply reply;
    if (req.method() != http::verb::get) {
      reply = {405, "application/json", R"({"error":"only GET"})"};
    } else {
      try {
        reply = handler_(std::string(req.target()));
      } catch (const std::exception& e) {
        spdlog::error("status server: {}", e.what());
        reply = {500, "application/json", R"({"error":"internal error"})"};
      }
    }
    http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
    res.set(http::field::content_type, reply.content_type);
    res.keep_alive(false);
    res.body() = std::move(reply.body);
    res.prepare_payload();
    http::write(socket, res, ec);
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  Handler handler_;
  std::uint16_t port_ = 0;
  asio::ip::address acceptor_address_;
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StatusServer>> StatusServer::Start(const std::string& host, std::uint16_t port,
                                                                  Handler handler) {
  auto server = std::make_unique<StatusServerImpl>(std::move(handler));
  if (auto s = server->Listen(host, port); !s.ok()) return s;
  return server;
}

absl::StatusOr<std::string> HttpGet(const std::string& host, std::uint16_t port, const std::string& target) {
  try {
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(5));
    stream.connect(resolver.resolve(host, std::to_string(port)));
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    if (res.result_int() != 200) return absl::UnavailableError("HTTP " + std::to_string(res.result_int()));
    return res.body();
  } catch (const std::exception& e) {
    return absl::UnavailableError(std::string("cannot reach ") + host + ":" + std::to_string(port) + ": " + e.what());
  }
}

}  // namespace strata::edge
