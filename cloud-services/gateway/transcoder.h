// The HTTP/JSON <-> gRPC transcoder behind the REST gateway, kept apart from the socket code so
// it can be tested on its own.
//
// A route table is built from the google.api.http annotations of the services' methods. A
// request (HTTP method, path, query string, body) is matched against it and becomes the full
// gRPC method name plus the request message, filled from the body, the query parameters and
// the path variables, in that order (a path variable wins over the same field set elsewhere).
// Every failure is an absl::Status whose code is what the client sees (see HttpStatusFor).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

namespace strata::gateway {

// One piece of a path template. A variable names a (dotted) field path and matches exactly one
// path segment.
struct PathSegment {
  bool is_variable = false;
  std::string literal;                                       // when !is_variable
  std::vector<const google::protobuf::FieldDescriptor*> field_path;  // when is_variable
  std::string variable_name;                                 // "device.device_id"
};

// One HTTP binding of one method.
struct Route {
  std::string http_method;  // "GET", "POST", ... (upper case)
  std::string path_template;  // as written in the annotation, e.g. "/v1/devices/{device_id}"
  std::vector<PathSegment> segments;
  std::string verb;  // custom verb without the colon ("connect"), or empty
  // "" (no body), "*" (the whole request) or the name of a top-level request field.
  std::string body;
  const google::protobuf::FieldDescriptor* body_field = nullptr;  // when body names a field
  const google::protobuf::MethodDescriptor* method = nullptr;
  bool streaming = false;  // client or server streaming: gRPC only

  // "/strata.v1.Telemetry/Query"
  std::string GrpcMethodPath() const;
};

// A matched request, ready for the gRPC call.
struct TranscodedRequest {
  std::string grpc_method;  // "/strata.v1.Telemetry/Query"
  std::unique_ptr<google::protobuf::Message> request;
  const google::protobuf::Descriptor* response_type = nullptr;
};

class Transcoder {
 public:
  // Builds the routes of the named services (full names) from the generated descriptor pool.
  // INVALID_ARGUMENT for an unknown service or a malformed or unsupported annotation.
  static absl::StatusOr<std::unique_ptr<Transcoder>> Create(const std::vector<std::string>& services);

  // Matches and fills one request. `path` is the raw (still percent-encoded) path without the
  // query; `query` the raw query string without '?'. Errors: NOT_FOUND (no route for the path),
  // method not allowed (UNIMPLEMENTED carrying HTTP 405 and the allowed methods, see
  // HttpStatusFor / AllowedMethods), UNIMPLEMENTED (a streaming method), INVALID_ARGUMENT (bad
  // query parameter, path variable or body).
  absl::StatusOr<TranscodedRequest> Transcode(std::string_view http_method, std::string_view path,
                                              std::string_view query, std::string_view body) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  explicit Transcoder(std::vector<Route> routes) : routes_(std::move(routes)) {}

  std::vector<Route> routes_;
};

// The HTTP status for a status from the transcoder or from a gRPC call, with the gRPC to HTTP
// code mapping (OK 200, INVALID_ARGUMENT 400, NOT_FOUND 404, UNAVAILABLE 503, ...).
int HttpStatusFor(const absl::Status& status);

// Attaches an HTTP status that the gRPC code alone would not give (405, 413, ...) and, for a
// 405, the Allow header value; HttpStatusFor and AllowedMethods read them back.
absl::Status WithHttpStatus(absl::Status status, int http_status, const std::string& allow = "");

// For a 405 from Transcode: the methods the path accepts, as an Allow header value.
std::string AllowedMethods(const absl::Status& status);

// {"error":{"code":<http status>,"status":"NOT_FOUND","message":"..."}}
std::string ErrorJson(const absl::Status& status);

// Parses the serialized response of a call into `response_type` and prints it with the
// canonical JSON mapping (proto field names, default values included). INTERNAL if the bytes
// do not parse.
absl::StatusOr<std::string> ResponseToJson(const google::protobuf::Descriptor* response_type,
                                           const std::string& serialized);

// The value of `type` that a request names as `name`: its full name (SORT_ORDER_DESC), or the
// short name without the enum's prefix (DESC), which the API took before its enum values were
// prefixed. Null when neither names a value.
const google::protobuf::EnumValueDescriptor* EnumValueByName(const google::protobuf::EnumDescriptor* type,
                                                             std::string_view name);

// The short names EnumValueByName also takes, for the values that have one (not *_UNSPECIFIED).
std::vector<std::string> EnumShortNames(const google::protobuf::EnumDescriptor* type);

// The HTTP headers of a REST request that its gRPC call carries as metadata, so that the
// services see the same caller on both paths: Authorization and X-Request-Id as they are,
// Grpc-Metadata-<name> as <name> (grpc-gateway's convention); others stay behind.
// INVALID_ARGUMENT for a forwarded header gRPC cannot carry: a name outside [a-z0-9-_.], a
// reserved one (grpc-*) or a binary one (*-bin), or a value that is not printable ASCII.
using Header = std::pair<std::string_view, std::string_view>;
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ForwardedMetadata(const std::vector<Header>& headers);

// Percent-decodes `in`; with plus_as_space, '+' becomes ' ' (query strings). INVALID_ARGUMENT
// for a malformed escape.
absl::StatusOr<std::string> PercentDecode(std::string_view in, bool plus_as_space);

}  // namespace strata::gateway
