// Test harness: a minimal synchronous HTTP/1.1 client (Boost.Beast) for REST tests over real
// sockets.
#pragma once

#include <string>

namespace strata::testing {

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string content_type;
};

// One request on a fresh connection. Throws on connection errors.
HttpResponse HttpRequest(const std::string& method, const std::string& host, unsigned short port,
                         const std::string& target, const std::string& body = "",
                         const std::string& content_type = "application/json");

}  // namespace strata::testing
