// The transcoder and the OpenAPI generator on their own: no sockets, no gRPC server.
#include "gateway/transcoder.h"

#include <set>

#include <absl/strings/match.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gateway/openapi.h"
#include "strata/v1/edgesync.pb.h"
#include "strata/v1/registry.pb.h"
#include "strata/v1/telemetry.pb.h"

namespace strata::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::string> kServices = {"strata.v1.DeviceRegistry", "strata.v1.Telemetry", "strata.v1.EdgeSync"};

class TranscoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = Transcoder::Create(kServices);
    ASSERT_TRUE(t.ok()) << t.status();
    transcoder_ = *std::move(t);
  }

  // Transcodes and returns the request as the given type; fails the test on an error.
  template <typename T>
  T Ok(std::string_view method, std::string_view target, std::string_view body = "",
       std::string_view expect_grpc_method = "") {
    const std::size_t q = target.find('?');
    auto r = transcoder_->Transcode(method, target.substr(0, q),
                                    q == std::string_view::npos ? std::string_view() : target.substr(q + 1), body);
    EXPECT_TRUE(r.ok()) << method << " " << target << ": " << r.status();
    if (!r.ok()) return T();
    if (!expect_grpc_method.empty()) {
      EXPECT_EQ(r->grpc_method, expect_grpc_method);
    }
    EXPECT_EQ(r->request->GetDescriptor(), T::descriptor());
    EXPECT_EQ(r->response_type->full_name().rfind("strata.v1.", 0), 0u);
    T out;
    out.CopyFrom(*r->request);
    return out;
  }

  absl::Status Err(std::string_view method, std::string_view target, std::string_view body = "") {
    const std::size_t q = target.find('?');
    auto r = transcoder_->Transcode(method, target.substr(0, q),
                                    q == std::string_view::npos ? std::string_view() : target.substr(q + 1), body);
    EXPECT_FALSE(r.ok()) << method << " " << target << " unexpectedly matched " << (r.ok() ? r->grpc_method : "");
    return r.ok() ? absl::OkStatus() : r.status();
  }

  std::unique_ptr<Transcoder> transcoder_;
};

TEST_F(TranscoderTest, BuildsOneRoutePerAnnotation) {
  // 11 registry methods, 4 telemetry methods and the streaming EdgeSync.Connect.
  EXPECT_EQ(transcoder_->routes().size(), 16u);
  int streaming = 0;
  for (const Route& r : transcoder_->routes()) streaming += r.streaming ? 1 : 0;
  EXPECT_EQ(streaming, 1);
}

TEST(TranscoderCreateTest, UnknownServiceIsInvalidArgument) {
  auto t = Transcoder::Create({"strata.v1.NoSuchService"});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("strata.v1.NoSuchService"));
}

TEST_F(TranscoderTest, RegistryRoutes) {
  auto create = Ok<v1::CreateDeviceRequest>("POST", "/v1/devices",
                                            R"({"device_id":"d1","name":"Pump","labels":{"site":"berlin"}})",
                                            "/strata.v1.DeviceRegistry/CreateDevice");
  EXPECT_EQ(create.device().device_id(), "d1");
  EXPECT_EQ(create.device().name(), "Pump");
  EXPECT_EQ(create.device().labels().at("site"), "berlin");

  auto get = Ok<v1::GetDeviceRequest>("GET", "/v1/devices/d1", "", "/strata.v1.DeviceRegistry/GetDevice");
  EXPECT_EQ(get.device_id(), "d1");

  auto list = Ok<v1::ListDevicesRequest>("GET", "/v1/devices?page_size=10&page_token=abc&label_filter=site%3Dberlin",
                                         "", "/strata.v1.DeviceRegistry/ListDevices");
  EXPECT_EQ(list.page_size(), 10);
  EXPECT_EQ(list.page_token(), "abc");
  EXPECT_EQ(list.label_filter(), "site=berlin");

  auto del = Ok<v1::DeleteDeviceRequest>("DELETE", "/v1/devices/d1", "", "/strata.v1.DeviceRegistry/DeleteDevice");
  EXPECT_EQ(del.device_id(), "d1");

  auto create_edge = Ok<v1::CreateEdgeRequest>("POST", "/v1/edges", R"({"edge_id":"e1","name":"Hall"})",
                                               "/strata.v1.DeviceRegistry/CreateEdge");
  EXPECT_EQ(create_edge.edge().edge_id(), "e1");

  auto get_edge = Ok<v1::GetEdgeRequest>("GET", "/v1/edges/e1", "", "/strata.v1.DeviceRegistry/GetEdge");
  EXPECT_EQ(get_edge.edge_id(), "e1");

  auto list_edges = Ok<v1::ListEdgesRequest>("GET", "/v1/edges?pageSize=5", "", "/strata.v1.DeviceRegistry/ListEdges");
  EXPECT_EQ(list_edges.page_size(), 5);  // JSON name accepted as well as the proto name
}

TEST_F(TranscoderTest, PatchSetsNestedPathVariableAndBody) {
  auto update = Ok<v1::UpdateDeviceRequest>("PATCH", "/v1/devices/d1?update_mask=name,labels",
                                            R"({"name":"New name","labels":{"k":"v"}})",
                                            "/strata.v1.DeviceRegistry/UpdateDevice");
  EXPECT_EQ(update.device().device_id(), "d1");
  EXPECT_EQ(update.device().name(), "New name");
  EXPECT_THAT(update.update_mask().paths(), ElementsAre("name", "labels"));
}

TEST_F(TranscoderTest, PathVariableWinsOverBody) {
  auto update = Ok<v1::UpdateDeviceRequest>("PATCH", "/v1/devices/d1", R"({"device_id":"other","name":"n"})");
  EXPECT_EQ(update.device().device_id(), "d1");
}

TEST_F(TranscoderTest, PathVariablesArePercentDecoded) {
  auto get = Ok<v1::GetDeviceRequest>("GET", "/v1/devices/%22quoted%22%20id%27s");
  EXPECT_EQ(get.device_id(), "\"quoted\" id's");
  // '+' is a plain character in a path; an encoded slash stays inside the one segment.
  EXPECT_EQ(Ok<v1::GetDeviceRequest>("GET", "/v1/devices/a+b").device_id(), "a+b");
  EXPECT_EQ(Ok<v1::GetDeviceRequest>("GET", "/v1/devices/a%2Fb").device_id(), "a/b");
  auto bad = Err("GET", "/v1/devices/bad%zzescape");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("device_id"));
}

TEST_F(TranscoderTest, AQueryValueThatIsNotUtf8IsABadRequest) {
  // Found by transcoder_fuzz: a well-known-type parameter (update_mask) that is not UTF-8
  // made the JSON quoting throw, and the exception ended the process.
  auto r = transcoder_->Transcode("PATCH", "/v1/devices/d1", "update_mask=%FF%FE", R"({"name":"x"})");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("not valid UTF-8"), std::string::npos) << r.status();
}

TEST_F(TranscoderTest, TelemetryRoutes) {
  auto write = Ok<v1::WriteTelemetryRequest>(
      "POST", "/v1/devices/d1/telemetry",
      R"([{"ts":1700000000000,"values":{"temperature":21.5,"on":true,"mode":"eco"}},{"values":{"rpm":3}}])",
      "/strata.v1.Telemetry/Write");
  EXPECT_EQ(write.device_id(), "d1");
  ASSERT_EQ(write.points_size(), 2);
  EXPECT_EQ(write.points(0).ts(), 1700000000000);
  EXPECT_DOUBLE_EQ(write.points(0).values().at("temperature").double_value(), 21.5);
  EXPECT_TRUE(write.points(0).values().at("on").bool_value());
  EXPECT_EQ(write.points(0).values().at("mode").string_value(), "eco");
  EXPECT_EQ(write.points(1).ts(), 0);
  EXPECT_EQ(write.points(1).values().at("rpm").int_value(), 3);

  auto query = Ok<v1::QueryTelemetryRequest>(
      "GET", "/v1/devices/d1/telemetry?keys=temperature&keys=humidity&start=1000&end=2000&limit=50&order=DESC&page_token=t",
      "", "/strata.v1.Telemetry/Query");
  EXPECT_EQ(query.device_id(), "d1");
  EXPECT_THAT(query.keys(), ElementsAre("temperature", "humidity"));
  EXPECT_EQ(query.start(), 1000);
  EXPECT_EQ(query.end(), 2000);
  EXPECT_EQ(query.limit(), 50);
  EXPECT_EQ(query.order(), v1::SORT_ORDER_DESC);
  EXPECT_EQ(query.page_token(), "t");

  auto latest = Ok<v1::LatestTelemetryRequest>("GET", "/v1/devices/d1/telemetry/latest?keys=a,b&keys=c", "",
                                               "/strata.v1.Telemetry/Latest");
  EXPECT_EQ(latest.device_id(), "d1");
  EXPECT_THAT(latest.keys(), ElementsAre("a", "b", "c"));

  auto agg = Ok<v1::AggregateTelemetryRequest>(
      "GET", "/v1/devices/d1/telemetry/aggregate?keys=t&start=0&end=3600000&interval=60000&function=AVG", "",
      "/strata.v1.Telemetry/Aggregate");
  EXPECT_THAT(agg.keys(), ElementsAre("t"));
  EXPECT_EQ(agg.end(), 3600000);
  EXPECT_EQ(agg.interval(), 60000);
  EXPECT_EQ(agg.function(), v1::AGGREGATION_FUNCTION_AVG);
}

TEST_F(TranscoderTest, QueryParameterConversions) {
  // Enum by number, '+' as space, an encoded comma kept inside one value, negative int64.
  auto q = Ok<v1::QueryTelemetryRequest>("GET", "/v1/devices/d1/telemetry?order=2&keys=a%2Cb&keys=c+d&start=-5");
  EXPECT_EQ(q.order(), v1::SORT_ORDER_DESC);
  EXPECT_THAT(q.keys(), ElementsAre("a,b", "c d"));
  EXPECT_EQ(q.start(), -5);
  // A parameter without a value sets the empty string; empty pairs are skipped.
  auto l = Ok<v1::ListDevicesRequest>("GET", "/v1/devices?page_token&&page_size=3");
  EXPECT_EQ(l.page_token(), "");
  EXPECT_EQ(l.page_size(), 3);
}

TEST_F(TranscoderTest, EnumValuesByFullOrShortName) {
  // The full names buf's lint asks for, and the short names the API took before them.
  for (const char* order : {"SORT_ORDER_DESC", "DESC", "2"}) {
    auto q = Ok<v1::QueryTelemetryRequest>("GET", std::string("/v1/devices/d1/telemetry?order=") + order);
    EXPECT_EQ(q.order(), v1::SORT_ORDER_DESC) << order;
  }
  auto agg = Ok<v1::AggregateTelemetryRequest>("GET", "/v1/devices/d1/telemetry/aggregate?function=AGGREGATION_FUNCTION_MAX");
  EXPECT_EQ(agg.function(), v1::AGGREGATION_FUNCTION_MAX);
  // UNSPECIFIED has no short name, other spellings none at all.
  for (const char* order : {"UNSPECIFIED", "desc", "SORT_ORDER_", "ORDER_DESC"}) {
    absl::Status s = Err("GET", std::string("/v1/devices/d1/telemetry?order=") + order);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << order;
    EXPECT_THAT(std::string(s.message()), HasSubstr("SORT_ORDER_DESC")) << order;
  }
  EXPECT_EQ(EnumShortNames(v1::AggregationFunction_descriptor()),
            (std::vector<std::string>{"AVG", "MIN", "MAX", "SUM", "COUNT"}));
}

TEST_F(TranscoderTest, BadQueryParametersAreInvalidArgumentNamingTheParameter) {
  struct Case {
    const char* target;
    const char* names;
  };
  for (const Case& c : std::vector<Case>{
           {"/v1/devices/d1/telemetry?limit=abc", "limit"},
           {"/v1/devices/d1/telemetry?limit=99999999999", "limit"},  // overflows int32
           {"/v1/devices/d1/telemetry?start=1.5", "start"},
           {"/v1/devices/d1/telemetry?order=SIDEWAYS", "order"},
           {"/v1/devices/d1/telemetry/aggregate?function=MEDIAN", "function"},
           {"/v1/devices/d1/telemetry?colour=red", "colour"},
           {"/v1/devices/d1/telemetry?keys=%zz", "keys"},
           {"/v1/devices?page_size.x=1", "page_size.x"},
       }) {
    absl::Status s = Err("GET", c.target);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.target;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.names)) << c.target;
    EXPECT_EQ(HttpStatusFor(s), 400);
  }
}

TEST_F(TranscoderTest, BodyErrorsAreInvalidArgument) {
  // Malformed JSON.
  absl::Status s = Err("POST", "/v1/devices/d1/telemetry", R"([{"ts":1700000000000,"values":)");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("JSON"));
  // Wrong type of a field: the parser's message names it.
  s = Err("POST", "/v1/devices/d1/telemetry", R"([{"ts":"yesterday","values":{}}])");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ts"));
  // An object where the list of points belongs.
  s = Err("POST", "/v1/devices/d1/telemetry", R"({"ts":1,"values":{"t":1}})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // Unknown fields are rejected, not ignored.
  s = Err("POST", "/v1/devices", R"({"device_id":"d1","colour":"red"})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("colour"));
  // The body is exactly one JSON value: it cannot smuggle in other request fields.
  s = Err("POST", "/v1/devices/d1/telemetry", R"([], "device_id": "other")");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // A method without a body takes none.
  s = Err("GET", "/v1/devices/d1", R"({"device_id":"d2"})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // An empty body for a method with a body is an empty message.
  EXPECT_EQ(Ok<v1::CreateDeviceRequest>("POST", "/v1/devices", "").device().device_id(), "");
}

TEST_F(TranscoderTest, NotFoundMethodNotAllowedAndStreaming) {
  absl::Status s = Err("GET", "/v1/nothing");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpStatusFor(s), 404);
  EXPECT_EQ(Err("GET", "/v1/devices/d1/telemetry/latest/extra").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Err("GET", "/v1/devices//telemetry").code(), absl::StatusCode::kNotFound);  // empty variable
  EXPECT_EQ(Err("GET", "v1/devices").code(), absl::StatusCode::kNotFound);

  s = Err("POST", "/v1/devices/d1");
  EXPECT_EQ(HttpStatusFor(s), 405);
  EXPECT_EQ(AllowedMethods(s), "GET, PATCH, DELETE");
  s = Err("PUT", "/v1/devices");
  EXPECT_EQ(HttpStatusFor(s), 405);
  EXPECT_EQ(AllowedMethods(s), "POST, GET");

  s = Err("POST", "/v1/edgesync:connect", R"({"hello":{"edge_id":"e1"}})");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(HttpStatusFor(s), 501);
  EXPECT_THAT(std::string(s.message()), HasSubstr("gRPC only"));
  s = Err("GET", "/v1/edgesync:connect");
  EXPECT_EQ(HttpStatusFor(s), 405);
  EXPECT_EQ(Err("POST", "/v1/edgesync").code(), absl::StatusCode::kNotFound);  // verb required
}

TEST(StatusMappingTest, GrpcCodesToHttp) {
  using C = absl::StatusCode;
  const std::vector<std::pair<C, int>> cases = {
      {C::kOk, 200},
      {C::kInvalidArgument, 400},
      {C::kFailedPrecondition, 400},
      {C::kOutOfRange, 400},
      {C::kUnauthenticated, 401},
      {C::kPermissionDenied, 403},
      {C::kNotFound, 404},
      {C::kAlreadyExists, 409},
      {C::kAborted, 409},
      {C::kResourceExhausted, 429},
      {C::kCancelled, 499},
      {C::kUnimplemented, 501},
      {C::kUnavailable, 503},
      {C::kDeadlineExceeded, 504},
      {C::kInternal, 500},
      {C::kUnknown, 500},
      {C::kDataLoss, 500},
  };
  for (const auto& [code, http] : cases) {
    EXPECT_EQ(HttpStatusFor(absl::Status(code, "x")), http) << absl::StatusCodeToString(code);
  }
  EXPECT_EQ(HttpStatusFor(WithHttpStatus(absl::InvalidArgumentError("too big"), 413)), 413);
}

TEST(StatusMappingTest, ErrorJsonShape) {
  auto body = nlohmann::json::parse(ErrorJson(absl::NotFoundError("device \"d1\" not found")));
  EXPECT_EQ(body["error"]["code"], 404);
  EXPECT_EQ(body["error"]["status"], "NOT_FOUND");
  EXPECT_EQ(body["error"]["message"], "device \"d1\" not found");
  // Invalid UTF-8 from client input does not break the body.
  nlohmann::json parsed;
  EXPECT_NO_THROW(parsed = nlohmann::json::parse(ErrorJson(absl::InvalidArgumentError("bad \xff byte"))));
}

TEST(ResponseToJsonTest, CanonicalJsonWithProtoNamesAndDefaults) {
  v1::Device device;
  device.set_device_id("d1");
  device.set_created_at(1700000000000);
  (*device.mutable_labels())["site"] = "berlin";
  auto json = ResponseToJson(v1::Device::descriptor(), device.SerializeAsString());
  ASSERT_TRUE(json.ok()) << json.status();
  auto parsed = nlohmann::json::parse(*json);
  EXPECT_EQ(parsed["device_id"], "d1");
  EXPECT_EQ(parsed["created_at"], "1700000000000");  // int64 is a string in canonical JSON
  EXPECT_EQ(parsed["name"], "");                     // defaults are printed
  EXPECT_EQ(parsed["last_seen_at"], "0");
  EXPECT_EQ(parsed["labels"]["site"], "berlin");

  auto bad = ResponseToJson(v1::Device::descriptor(), std::string("\xff\xff\xff", 3));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
}

TEST(PercentDecodeTest, Decodes) {
  EXPECT_EQ(*PercentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(*PercentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(*PercentDecode("%e2%82%ac", false), "\xe2\x82\xac");
  EXPECT_FALSE(PercentDecode("%2", false).ok());
  EXPECT_FALSE(PercentDecode("%g0", false).ok());
}

// Every "$ref" in the document points at a schema it defines.
// Every "$ref" under `node` names something in doc.components ("#/components/<kind>/<name>").
void ExpectRefsResolve(const nlohmann::json& node, const nlohmann::json& doc) {
  if (node.is_object()) {
    if (auto it = node.find("$ref"); it != node.end()) {
      const std::string ref = *it;
      const std::string prefix = "#/components/";
      ASSERT_EQ(ref.rfind(prefix, 0), 0u) << ref;
      const std::string rest = ref.substr(prefix.size());
      const auto slash = rest.find('/');
      ASSERT_NE(slash, std::string::npos) << ref;
      EXPECT_TRUE(doc["components"][rest.substr(0, slash)].contains(rest.substr(slash + 1))) << ref;
    }
    for (const auto& [key, value] : node.items()) ExpectRefsResolve(value, doc);
  } else if (node.is_array()) {
    for (const auto& value : node) ExpectRefsResolve(value, doc);
  }
}

TEST_F(TranscoderTest, OpenApiDocument) {
  const std::string text = OpenApiDocument(transcoder_->routes());
  nlohmann::json doc;
  ASSERT_NO_THROW(doc = nlohmann::json::parse(text));
  EXPECT_EQ(doc["openapi"], "3.0.3");
  nlohmann::json paths = doc["paths"];
  for (const char* p : {"/v1/devices", "/v1/devices/{device_id}", "/v1/edges",
                        "/v1/edges/{edge_id}", "/v1/devices/{device_id}/telemetry",
                        "/v1/devices/{device_id}/telemetry/latest", "/v1/devices/{device_id}/telemetry/aggregate",
                        "/healthz", "/readyz", "/metrics"}) {
    EXPECT_TRUE(paths.contains(p)) << p;
  }
  EXPECT_FALSE(paths.contains("/v1/edgesync:connect"));  // streaming: gRPC only

  EXPECT_TRUE(paths["/v1/devices"].contains("get"));
  EXPECT_TRUE(paths["/v1/devices"].contains("post"));
  EXPECT_EQ(paths["/v1/devices/{device_id}"]["patch"]["operationId"], "DeviceRegistry_UpdateDevice");
  nlohmann::json write = paths["/v1/devices/{device_id}/telemetry"]["post"];
  EXPECT_EQ(write["operationId"], "Telemetry_Write");
  nlohmann::json write_body = write["requestBody"]["content"]["application/json"]["schema"];
  EXPECT_EQ(write_body["type"], "array");
  EXPECT_EQ(write_body["items"]["$ref"], "#/components/schemas/strata.v1.TelemetryPoint");

  // CreateDevice has no field outside its body, so no parameters.
  EXPECT_FALSE(paths["/v1/devices"]["post"].contains("parameters"));

  // Query: the path parameter plus every unbound scalar, list and enum field.
  nlohmann::json query = paths["/v1/devices/{device_id}/telemetry"]["get"];
  EXPECT_EQ(query["operationId"], "Telemetry_Query");
  std::map<std::string, nlohmann::json> params;
  for (const auto& p : query["parameters"]) params[p["name"]] = p;
  ASSERT_EQ(params.size(), 7u);
  EXPECT_EQ(params["device_id"]["in"], "path");
  EXPECT_EQ(params["device_id"]["required"], true);
  EXPECT_EQ(params["keys"]["in"], "query");
  EXPECT_EQ(params["keys"]["schema"]["type"], "array");
  // An int64 is a decimal string (as responses print it) or a JSON number (as requests may give it).
  EXPECT_EQ(params["start"]["schema"]["anyOf"][0]["type"], "string");
  EXPECT_EQ(params["start"]["schema"]["anyOf"][1]["type"], "integer");
  EXPECT_EQ(params["start"]["schema"]["anyOf"][1]["format"], "int64");
  EXPECT_EQ(params["limit"]["schema"]["type"], "integer");
  EXPECT_EQ(params["order"]["schema"]["$ref"], "#/components/schemas/strata.v1.SortOrder");
  EXPECT_EQ(query["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/strata.v1.QueryTelemetryResponse");

  nlohmann::json schemas = doc["components"]["schemas"];
  nlohmann::json device = schemas["strata.v1.Device"]["properties"];
  EXPECT_EQ(device["labels"]["type"], "object");
  EXPECT_EQ(device["labels"]["additionalProperties"]["type"], "string");
  EXPECT_EQ(device["created_at"]["anyOf"][0]["type"], "string");
  EXPECT_FALSE(device["device_id"].value("description", "").empty()) << "field comments become descriptions";
  EXPECT_EQ(schemas["strata.v1.TelemetryPoint"]["properties"]["values"]["additionalProperties"]["$ref"],
            "#/components/schemas/strata.v1.Value");
  EXPECT_EQ(schemas["strata.v1.Value"]["anyOf"][0]["type"], "number") << "a bare scalar is a value";
  EXPECT_EQ(schemas["strata.v1.Value"]["anyOf"][3]["properties"]["int_value"]["anyOf"][1]["format"], "int64");
  EXPECT_FALSE(schemas.contains("strata.v1.UpdateDeviceRequest"));  // not referenced: the body is the device
  EXPECT_EQ(schemas["strata.v1.AggregationFunction"]["enum"],
            nlohmann::json::array({"AGGREGATION_FUNCTION_UNSPECIFIED", "AGGREGATION_FUNCTION_AVG",
                                   "AGGREGATION_FUNCTION_MIN", "AGGREGATION_FUNCTION_MAX", "AGGREGATION_FUNCTION_SUM",
                                   "AGGREGATION_FUNCTION_COUNT", "AVG", "MIN", "MAX", "SUM", "COUNT"}))
      << "the full names, then the short ones requests may give";
  EXPECT_EQ(schemas["strata.v1.Edge"]["properties"]["high_water_mark"]["anyOf"][1]["minimum"], 0);
  EXPECT_TRUE(schemas.contains("strata.v1.Reading"));
  EXPECT_TRUE(schemas.contains("strata.v1.Value"));
  ExpectRefsResolve(doc, doc);

  // PATCH binds device.device_id, named by its field so that it shares the path of GET and
  // DELETE (OpenAPI takes two templates that differ only in a variable's name for a clash);
  // its update_mask is a query parameter written as a string.
  EXPECT_FALSE(paths.contains("/v1/devices/{device.device_id}"));
  std::set<std::string> patch_params;
  for (const auto& p : paths["/v1/devices/{device_id}"]["patch"]["parameters"]) patch_params.insert(p["name"]);
  EXPECT_EQ(patch_params, (std::set<std::string>{"device_id", "update_mask"}));
  EXPECT_TRUE(paths["/v1/devices/{device_id}"].contains("get"));
  EXPECT_TRUE(paths["/v1/devices/{device_id}"].contains("delete"));

  // Operation ids are unique; every operation has a summary, a tag the document defines and
  // error responses.
  std::set<std::string> tags;
  for (const auto& t : doc["tags"]) tags.insert(t["name"]);
  std::set<std::string> ids;
  for (const auto& [path, ops] : paths.items()) {
    for (const auto& [verb, op] : ops.items()) {
      SCOPED_TRACE(verb + " " + path);
      EXPECT_TRUE(ids.insert(op["operationId"].get<std::string>()).second);
      EXPECT_FALSE(op.value("summary", "").empty());
      EXPECT_FALSE(op.value("description", "").empty());
      EXPECT_TRUE(tags.count(op["tags"][0].get<std::string>()));
      if (absl::StartsWith(path, "/v1/")) {
        EXPECT_TRUE(op["responses"].contains("400"));
        EXPECT_TRUE(op["responses"].contains("default"));
      }
    }
  }
  EXPECT_TRUE(paths["/v1/devices"]["post"]["responses"].contains("409"));
  EXPECT_TRUE(paths["/v1/devices/{device_id}"]["get"]["responses"].contains("404"));

}

TEST(ForwardedMetadataTest, AuthorizationRequestIdAndGrpcMetadataHeadersOnly) {
  auto md = ForwardedMetadata({{"Authorization", "Bearer k1"},
                               {"X-Request-Id", "r-7"},
                               {"Grpc-Metadata-X-Trace", "abc"},
                               {"Content-Type", "application/json"},
                               {"Cookie", "secret"}});
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(*md, (std::vector<std::pair<std::string, std::string>>{
                     {"authorization", "Bearer k1"}, {"x-request-id", "r-7"}, {"x-trace", "abc"}}));
  for (const Header& bad : std::vector<Header>{{"Grpc-Metadata-grpc-timeout", "1S"},
                                               {"Grpc-Metadata-key-bin", "AAAA"},
                                               {"Grpc-Metadata-", "x"},
                                               {"Grpc-Metadata-a b", "x"},
                                               {"Authorization", "Bearer \x01"}}) {
    auto s = ForwardedMetadata({bad});
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad.first;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(std::string(bad.first))) << bad.first;
  }
}

}  // namespace
}  // namespace strata::gateway
