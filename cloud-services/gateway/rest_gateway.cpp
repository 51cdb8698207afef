#include "gateway/rest_gateway.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <spdlog/spdlog.h>

#include "gateway/openapi.h"
#include "gateway/transcoder.h"

namespace strata::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// How long a connection may take to send a request (and an idle keep-alive connection may
// wait for its next one), and to take a response.
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// Deadline of each gRPC call made for a request.
constexpr auto kCallDeadline = std::chrono::seconds(30);
// Shutdown: how long in-flight requests get before their calls are cancelled.
constexpr auto kShutdownGrace = std::chrono::seconds(10);
// After an error response that closes the connection (413, 400), the unread rest of the
// request is read and dropped, up to this much and this long, so that closing does not reset
// the connection before the client has read the response.
constexpr std::size_t kMaxDrainBytes = 4 * 1024 * 1024;
constexpr auto kDrainTimeout = std::chrono::seconds(2);

constexpr char kJson[] = "application/json";

// The state of one gRPC call; it outlives the call's completion callback, as gRPC requires.
struct Call {
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  std::string method;
  const google::protobuf::Descriptor* response_type = nullptr;
};

// What the gateway and all its connections share. Owned by the gateway, which outlives every
// connection and every call (Shutdown waits for the calls).
struct Shared {
  std::unique_ptr<Transcoder> transcoder;
  std::string openapi;
  HttpHooks hooks;
  std::size_t max_body_bytes = 0;
  std::unique_ptr<grpc::GenericStub> stub;
  std::atomic<bool> stopping{false};

  std::mutex mu;
  std::condition_variable cv;
  int active_requests = 0;                // guarded by mu: read, not yet answered
  std::set<std::shared_ptr<Call>> calls;  // guarded by mu: started, not yet completed
  bool cancel_calls = false;              // guarded by mu: Shutdown ran out of patience

  void AddCall(const std::shared_ptr<Call>& call) {
    std::lock_guard<std::mutex> lock(mu);
    calls.insert(call);
    // A call started after Shutdown cancelled the others is cancelled as soon as it starts.
    if (cancel_calls) call->context.TryCancel();
  }
  void RemoveCall(Call* call) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = calls.begin(); it != calls.end(); ++it) {
      if (it->get() == call) {
        calls.erase(it);
        break;
      }
    }
    cv.notify_all();
  }
};

// Counts one request from the moment it is read until its response is written (or the
// connection dies), for the graceful shutdown.
class ActiveRequest {
 public:
  explicit ActiveRequest(Shared* shared) : shared_(shared) {
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->active_requests;
  }
  ~ActiveRequest() {
    std::lock_guard<std::mutex> lock(shared_->mu);
    --shared_->active_requests;
    shared_->cv.notify_all();
  }
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

 private:
  Shared* shared_;
};

// One HTTP connection. Every member is used on the connection's strand only, except
// stream_.get_executor(), which is fixed at construction.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Shared* shared) : stream_(std::move(socket)), shared_(shared) {}

  void Start() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::Read, shared_from_this()));
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(shared_->max_body_bytes);
    stream_.expires_after(kReadTimeout);
    // The header first: a too large Content-Length is refused before any of the body is read,
    // and a client that sent "Expect: 100-continue" is told to go on.
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, std::size_t) {
    if (ec) {
      OnReadError(ec);
      return;
    }
    const auto expect = parser_->get()[http::field::expect];
    if (beast::iequals(expect, "100-continue") && parser_->get().version() >= 11) {
      continue_.emplace(http::status::continue_, parser_->get().version());
      stream_.expires_after(kWriteTimeout);
      http::async_write(stream_, *continue_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->continue_.reset();
        if (ec) {
          spdlog::debug("REST write failed: {}", ec.message());
          return;
        }
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    stream_.expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof) {
      Close();
      return;
    }
    if (ec == http::error::body_limit) {
      active_.emplace(shared_);
      request_ = {};
      request_.base() = parser_->get().base();
      version_ = parser_->get().version();
      keep_alive_ = false;
      drain_after_write_ = true;
      Reject(WithHttpStatus(absl::InvalidArgumentError("request body larger than " +
                                                       std::to_string(shared_->max_body_bytes) + " bytes"),
                            413));
      return;
    }
    if (ec == beast::error::timeout) {
      Close();  // idle or slow client
      return;
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
      active_.emplace(shared_);
      request_ = {};
      version_ = 11;
      keep_alive_ = false;
      drain_after_write_ = true;
      Reject(absl::InvalidArgumentError("malformed HTTP request: " + ec.message()));
      return;
    }
    spdlog::debug("REST connection ended: {}", ec.message());  // gone: nothing to answer
  }

  void OnRead(beast::error_code ec, std::size_t) {
    if (ec) {
      OnReadError(ec);
      return;
    }

    active_.emplace(shared_);
    request_ = parser_->release();
    version_ = request_.version();
    keep_alive_ = request_.keep_alive();
    drain_after_write_ = false;
    try {
      Handle();
    } catch (const std::exception& e) {
      spdlog::error("REST {} {}: unexpected exception: {}", std::string(request_.method_string()),
                    std::string(request_.target()), e.what());
      Respond(500, kJson, ErrorJson(absl::InternalError("internal error")));
    } catch (...) {
      spdlog::error("REST {} {}: unexpected exception of unknown type", std::string(request_.method_string()),
                    std::string(request_.target()));
      Respond(500, kJson, ErrorJson(absl::InternalError("internal error")));
    }
  }

  void Handle() {
    const std::string_view target(request_.target().data(), request_.target().size());
    const std::string_view method(request_.method_string().data(), request_.method_string().size());
    const std::size_t q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

    if (path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/openapi.json") {
      if (method != "GET") {
        Fail(WithHttpStatus(absl::UnimplementedError("method " + std::string(method) + " is not allowed on " +
                                                     std::string(path) + "; allowed: GET"),
                            405, "GET"));
        return;
      }
      if (path == "/healthz") {
        Respond(200, kJson, R"({"status":"ok"})");
      } else if (path == "/readyz") {
        const bool ready = !shared_->hooks.ready || shared_->hooks.ready();
        if (ready) {
          Respond(200, kJson, R"({"status":"ready"})");
        } else {
          Fail(absl::UnavailableError("not ready"));
        }
      } else if (path == "/metrics") {
        Respond(200, "text/plain; version=0.0.4", shared_->hooks.metrics ? shared_->hooks.metrics() : std::string());
      } else {
        Respond(200, kJson, shared_->openapi);
      }
      return;
    }

    auto transcoded = shared_->transcoder->Transcode(method, path, query, request_.body());
    if (!transcoded.ok()) {
      Reject(transcoded.status());
      return;
    }
    std::vector<Header> headers;
    for (const auto& field : request_) {
      headers.emplace_back(std::string_view(field.name_string().data(), field.name_string().size()),
                           std::string_view(field.value().data(), field.value().size()));
    }
    auto metadata = ForwardedMetadata(headers);
    if (!metadata.ok()) {
      Reject(metadata.status());
      return;
    }
    StartCall(*std::move(transcoded), *metadata);
  }

  void StartCall(TranscodedRequest transcoded, const std::vector<std::pair<std::string, std::string>>& metadata) {
    auto call = std::make_shared<Call>();
    for (const auto& [name, value] : metadata) call->context.AddMetadata(name, value);
    call->method = std::move(transcoded.grpc_method);
    call->response_type = transcoded.response_type;
    std::string bytes;
    if (!transcoded.request->SerializeToString(&bytes)) {
      Fail(absl::InternalError("cannot serialize the request"));
      return;
    }
    grpc::Slice slice(bytes);
    call->request = grpc::ByteBuffer(&slice, 1);
    call->context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    shared_->AddCall(call);

    // The callback runs on a gRPC thread: it only hands the result to this connection's strand.
    // It moves its references into the posted handler so that nothing of the connection is
    // released on the gRPC thread, and deregisters the call last, after which Shutdown may
    // tear the io_context down.
    Shared* shared = shared_;
    Call* raw = call.get();
    shared_->stub->UnaryCall(&raw->context, raw->method, grpc::StubOptions(), &raw->request, &raw->response,
                             [self = shared_from_this(), call, shared, raw](grpc::Status status) mutable {
                               {
                                 // The executor copy must be gone before RemoveCall: once the
                                 // call is deregistered the io_context (and its strands) may be
                                 // destroyed.
                                 auto executor = self->stream_.get_executor();
                                 net::post(executor, [self = std::move(self), call = std::move(call),
                                                      status = std::move(status)]() mutable {
                                   self->OnCallDone(*call, status);
                                 });
                               }
                               shared->RemoveCall(raw);
                             });
  }

  void OnCallDone(Call& call, const grpc::Status& status) {
    try {
      if (!status.ok()) {
        // gRPC's own errors (an unimplemented method, ...) may come without a message.
        const std::string message = status.error_message().empty()
                                        ? call.method + " failed with " +
                                              absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
                                        : status.error_message();
        const absl::Status error(static_cast<absl::StatusCode>(status.error_code()), message);
        Fail(error);
        return;
      }
      std::string serialized;
      {
        grpc::ProtoBufferReader reader(&call.response);
        const void* data;
        int size;
        while (reader.Next(&data, &size)) serialized.append(static_cast<const char*>(data), size);
      }
      auto json = ResponseToJson(call.response_type, serialized);
      if (!json.ok()) {
        Fail(json.status());
        return;
      }
      Respond(200, kJson, *std::move(json));
    } catch (const std::exception& e) {
      spdlog::error("REST {}: unexpected exception: {}", call.method, e.what());
      Respond(500, kJson, ErrorJson(absl::InternalError("internal error")));
    }
  }

  // Answers with the JSON error body, logging the failure once.
  // Fail() for a request refused before any call: counted through hooks.rejected.
  void Reject(const absl::Status& status) {
    if (shared_->hooks.rejected) shared_->hooks.rejected(HttpStatusFor(status));
    Fail(status);
  }

  void Fail(const absl::Status& status) {
    const int http_status = HttpStatusFor(status);
    const std::string target = request_.target().empty() ? std::string("-") : std::string(request_.target());
    const std::string method = std::string(request_.method_string());
    if (http_status >= 500) {
      spdlog::info("REST {} {} -> {} {}: {}", method, target, http_status,
                   absl::StatusCodeToString(status.code()), std::string(status.message()));
    } else {
      spdlog::debug("REST {} {} -> {} {}: {}", method, target, http_status,
                    absl::StatusCodeToString(status.code()), std::string(status.message()));
    }
    Respond(http_status, kJson, ErrorJson(status), AllowedMethods(status));
  }

  void Respond(int status, const std::string& content_type, std::string body, const std::string& allow = "") {
    response_.emplace();
    response_->result(static_cast<unsigned>(status));
    if (status == 499) response_->reason("Client Closed Request");
    response_->version(version_);
    response_->set(http::field::server, "strata");
    response_->set(http::field::content_type, content_type);
    if (!allow.empty()) response_->set(http::field::allow, allow);
    response_->keep_alive(keep_alive_ && !shared_->stopping.load());
    response_->body() = std::move(body);
    response_->prepare_payload();
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, *response_, beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, std::size_t) {
    const bool close = !response_->keep_alive();
    response_.reset();
    active_.reset();
    if (ec) {
      spdlog::debug("REST write failed: {}", ec.message());
      return;
    }
    if (drain_after_write_) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      drained_ = 0;
      Drain();
      return;
    }
    if (close) {
      Close();
      return;
    }
    Read();
  }

  void Drain() {
    stream_.expires_after(kDrainTimeout);
    stream_.async_read_some(net::buffer(drain_buffer_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) {
        beast::error_code ignored;
        self->stream_.socket().close(ignored);
        return;
      }
      self->Drain();
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  Shared* shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  std::optional<http::response<http::string_body>> response_;
  std::optional<http::response<http::empty_body>> continue_;
  std::optional<ActiveRequest> active_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool drain_after_write_ = false;
  std::size_t drained_ = 0;
  std::array<char, 16 * 1024> drain_buffer_{};
};

class RestGatewayImpl final : public RestGateway {
 public:
  RestGatewayImpl(std::unique_ptr<Shared> shared, int threads)
      : shared_(std::move(shared)),
        ioc_(std::in_place, threads),
        work_(std::in_place, net::make_work_guard(*ioc_)),
        acceptor_(std::in_place, net::make_strand(*ioc_)),
        threads_(threads) {}

  ~RestGatewayImpl() override { Shutdown(); }

  absl::Status Listen(const std::string& host, std::uint16_t port) {
    beast::error_code ec;
    net::ip::address address = net::ip::make_address(host, ec);
    if (ec) {
      tcp::resolver resolver(*ioc_);
      auto results = resolver.resolve(host, std::to_string(port), ec);
      if (ec || results.empty()) {
        return absl::UnavailableError("cannot resolve REST host \"" + host + "\": " + ec.message());
      }
      address = results.begin()->endpoint().address();
    }
    const tcp::endpoint endpoint(address, port);
    const std::string where = host + ":" + std::to_string(port);
    if (acceptor_->open(endpoint.protocol(), ec); ec) {
      return absl::UnavailableError("cannot open a socket for " + where + ": " + ec.message());
    }
    if (acceptor_->set_option(net::socket_base::reuse_address(true), ec); ec) {
      return absl::UnavailableError("cannot set SO_REUSEADDR on " + where + ": " + ec.message());
    }
    if (acceptor_->bind(endpoint, ec); ec) {
      return absl::UnavailableError("cannot bind " + where + ": " + ec.message());
    }
    if (acceptor_->listen(net::socket_base::max_listen_connections, ec); ec) {
      return absl::UnavailableError("cannot listen on " + where + ": " + ec.message());
    }
    port_ = acceptor_->local_endpoint().port();
    return absl::OkStatus();
  }

  void Run() {
    net::dispatch(acceptor_->get_executor(), [this] { Accept(); });
    for (int i = 0; i < threads_; ++i) {
      workers_.emplace_back([this] { ioc_->run(); });
    }
  }

  std::uint16_t Port() const override { return port_; }

  void Shutdown() override {
    std::lock_guard<std::mutex> once(shutdown_mu_);
    if (!ioc_) return;  // already shut down
    shared_->stopping = true;

    // 1. Stop accepting (on the acceptor's strand, where it is used).
    if (!workers_.empty()) {
      std::promise<void> closed;
      net::post(acceptor_->get_executor(), [this, &closed] {
        beast::error_code ignored;
        acceptor_->close(ignored);
        closed.set_value();
      });
      closed.get_future().wait();
    }

    // 2. Let in-flight requests finish, for a bounded time; then cancel their calls, whose
    // callbacks gRPC then runs promptly. The io_context must outlive every callback.
    std::vector<std::shared_ptr<Call>> to_cancel;
    {
      std::unique_lock<std::mutex> lock(shared_->mu);
      if (!shared_->cv.wait_for(lock, kShutdownGrace, [&] { return shared_->active_requests == 0; })) {
        spdlog::warn("REST gateway shutdown: {} requests still in flight after {} s; cancelling their calls",
                     shared_->active_requests, kShutdownGrace.count());
        shared_->cancel_calls = true;
        to_cancel.assign(shared_->calls.begin(), shared_->calls.end());
      }
    }
    for (const auto& call : to_cancel) call->context.TryCancel();
    to_cancel.clear();
    {
      std::unique_lock<std::mutex> lock(shared_->mu);
      shared_->cv.wait(lock, [&] { return shared_->calls.empty(); });
    }

    // 3. Stop the loop and join; destroying the io_context closes the idle connections.
    work_.reset();
    ioc_->stop();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    acceptor_.reset();
    ioc_.reset();
  }

 private:
  void Accept() {
    acceptor_->async_accept(net::make_strand(*ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor_->is_open()) return;
      if (ec) {
        spdlog::warn("REST gateway: accept failed: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(socket), shared_.get())->Start();
      }
      Accept();
    });
  }

  // Declaration order matters: the io_context (and with it every connection) goes before the
  // state the connections use.
  std::unique_ptr<Shared> shared_;
  std::mutex shutdown_mu_;
  std::optional<net::io_context> ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::optional<tcp::acceptor> acceptor_;
  int threads_;
  std::vector<std::thread> workers_;
  std::uint16_t port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RestGateway>> RestGateway::Create(const RestGatewayOptions& options,
                                                                 std::shared_ptr<grpc::Channel> channel,
                                                                 const std::vector<std::string>& services,
                                                                 HttpHooks hooks) {
  if (options.threads < 1) return absl::InvalidArgumentError("RestGatewayOptions.threads must be at least 1");
  if (channel == nullptr) return absl::InvalidArgumentError("the REST gateway needs a gRPC channel");
  auto transcoder = Transcoder::Create(services);
  if (!transcoder.ok()) return transcoder.status();

  auto shared = std::make_unique<Shared>();
  shared->openapi = OpenApiDocument((*transcoder)->routes());
  shared->transcoder = *std::move(transcoder);
  shared->hooks = std::move(hooks);
  shared->max_body_bytes = options.max_body_bytes;
  shared->stub = std::make_unique<grpc::GenericStub>(std::move(channel));

  auto gateway = std::make_unique<RestGatewayImpl>(std::move(shared), options.threads);
  if (absl::Status s = gateway->Listen(options.host, options.port); !s.ok()) return s;
  gateway->Run();
  return std::unique_ptr<RestGateway>(std::move(gateway));
}

}  // namespace strata::gateway
