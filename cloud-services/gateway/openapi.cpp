#include "gateway/openapi.h"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>
#include <google/protobuf/descriptor.pb.h>
#include <nlohmann/json.hpp>

#include "strata/v1/descriptor_set.h"

namespace strata::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;
using nlohmann::json;

// The comments of the protos, from the embedded descriptor set with source info (the
// generated descriptors carry none): descriptions of operations, tags, schemas and fields.
class Comments {
 public:
  Comments() {
    google::protobuf::FileDescriptorSet set;
    const std::string_view bytes = v1::DescriptorSetWithSourceInfo();
    if (!set.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
    for (const auto& file : set.file()) pool_.BuildFile(file);  // in dependency order
  }

  std::string Of(const MethodDescriptor* m) const { return Text(pool_.FindMethodByName(m->full_name())); }
  std::string Of(const ServiceDescriptor* s) const { return Text(pool_.FindServiceByName(s->full_name())); }
  std::string Of(const Descriptor* d) const { return Text(pool_.FindMessageTypeByName(d->full_name())); }
  std::string Of(const EnumDescriptor* e) const { return Text(pool_.FindEnumTypeByName(e->full_name())); }
  std::string Of(const FieldDescriptor* f) const { return Text(pool_.FindFieldByName(f->full_name())); }
  std::string OfFile(const google::protobuf::FileDescriptor* f) const {
    const auto* file = pool_.FindFileByName(f->name());
    google::protobuf::SourceLocation loc;
    constexpr int kPackageField = 2;  // FileDescriptorProto.package
    if (file == nullptr || !file->GetSourceLocation({kPackageField}, &loc)) return "";
    return Join(loc.leading_comments);
  }

 private:
  template <typename D>
  static std::string Text(const D* d) {
    google::protobuf::SourceLocation loc;
    if (d == nullptr || !d->GetSourceLocation(&loc)) return "";
    return Join(loc.leading_comments);
  }

  // Comment lines, each stripped, joined by spaces (paragraphs by a blank line).
  static std::string Join(const std::string& comment) {
    std::string out;
    bool paragraph = false;
    for (absl::string_view line : absl::StrSplit(comment, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line.empty()) {
        paragraph = !out.empty();
        continue;
      }
      absl::StrAppend(&out, out.empty() ? "" : (paragraph ? "\n\n" : " "), line);
      paragraph = false;
    }
    return out;
  }

  google::protobuf::DescriptorPool pool_;
};

const Comments& ProtoComments() {
  static const Comments comments;  // immutable once built; the descriptor set never changes
  return comments;
}

// The method name in words: "CreateDevice" -> "Create device" (the proto comment, when there
// is one, is the description).
std::string Summary(const MethodDescriptor* method) {
  std::string out;
  for (char c : method->name()) {
    if (absl::ascii_isupper(c) && !out.empty()) {
      out += ' ';
      out += absl::ascii_tolower(c);
    } else {
      out += c;
    }
  }
  return out;
}

// A schema with the proto comment as its description, when there is one.
json Described(json schema, const std::string& description) {
  if (!description.empty() && !schema.contains("$ref")) schema["description"] = description;
  return schema;
}

constexpr char kErrorSchema[] = "strata.gateway.Error";

std::string Ref(const std::string& name) { return absl::StrCat("#/components/schemas/", name); }

// Collects the message and enum types the document refers to, so that components/schemas holds
// each exactly once.
class SchemaBuilder {
 public:
  json MessageSchemaRef(const Descriptor* type) {
    if (auto wkt = WellKnown(type)) return *wkt;
    if (seen_.insert(type->full_name()).second) pending_.push_back(type);
    return json{{"$ref", Ref(type->full_name())}};
  }

  json EnumSchemaRef(const EnumDescriptor* type) {
    if (type->full_name() == "google.protobuf.NullValue") return json{{"nullable", true}};
    if (seen_.insert(type->full_name()).second) {
      json values = json::array();
      for (int i = 0; i < type->value_count(); ++i) values.push_back(type->value(i)->name());
      // Requests may also give the short names (DESC for SORT_ORDER_DESC); responses print
      // the full ones.
      const std::vector<std::string> short_names = EnumShortNames(type);
      for (const auto& n : short_names) values.push_back(n);
      std::string description = ProtoComments().Of(type);
      if (!short_names.empty()) {
        absl::StrAppend(&description, description.empty() ? "" : " ",
                        "Requests may give a value without its prefix; responses print the full name.");
      }
      schemas_[type->full_name()] = Described(json{{"type", "string"}, {"enum", values}}, description);
    }
    return json{{"$ref", Ref(type->full_name())}};
  }

  // The schema of one value of `field` (ignoring repeated).
  json SingleValueSchema(const FieldDescriptor* field) {
    switch (field->type()) {
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
        return json{{"type", "integer"}, {"format", "int32"}};
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        return json{{"type", "integer"}, {"format", "int64"}, {"minimum", 0}};
      // 64-bit integers are strings in the canonical JSON mapping, which is how responses
      // print them; requests may give a JSON number or a decimal string, as the parser takes.
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
        return Int64Schema(false);
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        return Int64Schema(true);
      case FieldDescriptor::TYPE_DOUBLE:
        return json{{"type", "number"}, {"format", "double"}};
      case FieldDescriptor::TYPE_FLOAT:
        return json{{"type", "number"}, {"format", "float"}};
      case FieldDescriptor::TYPE_BOOL:
        return json{{"type", "boolean"}};
      case FieldDescriptor::TYPE_STRING:
        return json{{"type", "string"}};
      case FieldDescriptor::TYPE_BYTES:
        return json{{"type", "string"}, {"format", "byte"}};
      case FieldDescriptor::TYPE_ENUM:
        return EnumSchemaRef(field->enum_type());
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        return MessageSchemaRef(field->message_type());
    }
    return json::object();
  }

  static json Int64Schema(bool is_unsigned) {
    json number{{"type", "integer"}, {"format", "int64"}};
    json text{{"type", "string"}, {"pattern", is_unsigned ? "^[0-9]+$" : "^-?[0-9]+$"}};
    if (is_unsigned) number["minimum"] = 0;
    return json{{"anyOf", json::array({text, number})}};
  }

  json FieldSchema(const FieldDescriptor* field) {
    if (field->is_map()) {
      return json{{"type", "object"},
                  {"additionalProperties", SingleValueSchema(field->message_type()->map_value())}};
    }
    if (field->is_repeated()) return json{{"type", "array"}, {"items", SingleValueSchema(field)}};
    return SingleValueSchema(field);
  }

  // Builds the schemas of every message referred to so far, and of the ones they refer to.
  json Finish() {
    while (!pending_.empty()) {
      const Descriptor* type = pending_.front();
      pending_.pop_front();
      json properties = json::object();
      for (int i = 0; i < type->field_count(); ++i) {
        properties[type->field(i)->name()] = Described(FieldSchema(type->field(i)), ProtoComments().Of(type->field(i)));
      }
      json schema = Described(json{{"type", "object"}, {"properties", properties}}, ProtoComments().Of(type));
      if (type->full_name() == "strata.v1.Value") {
        // A telemetry value: responses print the object form; requests may also give the
        // bare scalar (21 an int64, 21.5 a double, true, "on"), as the transcoder reads it.
        schema["maxProperties"] = 1;
        std::string description = schema.value("description", "");
        schema.erase("description");
        schema = Described(json{{"anyOf", json::array({json{{"type", "number"}}, json{{"type", "boolean"}},
                                                       json{{"type", "string"}}, schema})}},
                           description);
      }
      schemas_[type->full_name()] = std::move(schema);
    }
    json out = json::object();
    for (auto& [name, schema] : schemas_) out[name] = schema;
    return out;
  }

  void Add(const std::string& name, json schema) { schemas_[name] = std::move(schema); }

 private:
  static std::optional<json> WellKnown(const Descriptor* type) {
    const std::string& n = type->full_name();
    if (n == "google.protobuf.Value") return json::object();  // any JSON value
    if (n == "google.protobuf.Struct") return json{{"type", "object"}, {"additionalProperties", json::object()}};
    if (n == "google.protobuf.ListValue") return json{{"type", "array"}, {"items", json::object()}};
    if (n == "google.protobuf.FieldMask") return json{{"type", "string"}};
    if (n == "google.protobuf.Timestamp") return json{{"type", "string"}, {"format", "date-time"}};
    if (n == "google.protobuf.Duration") return json{{"type", "string"}};
    if (n == "google.protobuf.Empty" || n == "google.protobuf.Any") return json{{"type", "object"}};
    if (n == "google.protobuf.DoubleValue" || n == "google.protobuf.FloatValue") return json{{"type", "number"}};
    if (n == "google.protobuf.Int32Value" || n == "google.protobuf.UInt32Value") return json{{"type", "integer"}};
    if (n == "google.protobuf.Int64Value") return Int64Schema(false);
    if (n == "google.protobuf.UInt64Value") return Int64Schema(true);
    if (n == "google.protobuf.BoolValue") return json{{"type", "boolean"}};
    if (n == "google.protobuf.StringValue") return json{{"type", "string"}};
    if (n == "google.protobuf.BytesValue") return json{{"type", "string"}, {"format", "byte"}};
    return std::nullopt;
  }

  std::set<std::string> seen_;
  std::deque<const Descriptor*> pending_;
  std::map<std::string, json> schemas_;
};

// Whether a field can be given as a query parameter: scalars, enums, lists of them, and the
// well-known types written as one string.
bool IsQueryable(const FieldDescriptor* field) {
  if (field->is_map()) return false;
  if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return true;
  const std::string& n = field->message_type()->full_name();
  return !field->is_repeated() &&
         (n == "google.protobuf.FieldMask" || n == "google.protobuf.Timestamp" || n == "google.protobuf.Duration");
}

// A path variable's name in the document: the field it binds ("device_id" for
// "device.device_id"), so that the bindings of one path read as one path (OpenAPI takes
// /v1/devices/{device_id} and /v1/devices/{device.device_id} for two paths that clash).
std::string ParameterName(const PathSegment& seg) { return seg.field_path.back()->name(); }

std::string OpenApiPath(const Route& route) {
  std::string path;
  for (const PathSegment& seg : route.segments) {
    absl::StrAppend(&path, "/", seg.is_variable ? absl::StrCat("{", ParameterName(seg), "}") : seg.literal);
  }
  if (!route.verb.empty()) absl::StrAppend(&path, ":", route.verb);
  return path;
}

json JsonContent(json schema) { return json{{"application/json", {{"schema", std::move(schema)}}}}; }

json ErrorResponse(const std::string& name) { return json{{"$ref", absl::StrCat("#/components/responses/", name)}}; }

// Whether the route's path names a resource (that may not exist).
bool HasPathVariables(const Route& route) {
  return std::any_of(route.segments.begin(), route.segments.end(), [](const PathSegment& s) { return s.is_variable; });
}

// The shared error responses, all with the gateway's error body.
json ErrorResponses() {
  const json body = JsonContent(json{{"$ref", Ref(kErrorSchema)}});
  return json{
      {"BadRequest", {{"description", "INVALID_ARGUMENT: the request is malformed or a value is out of range; "
                                      "the message names the field"}, {"content", body}}},
      {"NotFound", {{"description", "NOT_FOUND: the resource the path names does not exist"}, {"content", body}}},
      {"Conflict", {{"description", "ALREADY_EXISTS: a resource with this id exists"}, {"content", body}}},
      {"Unavailable", {{"description", "UNAVAILABLE: the database or the service behind the gateway cannot be "
                                       "reached; retry later"}, {"content", body}}},
      {"Error", {{"description", "Any other error, with the gRPC status it maps"}, {"content", body}}}};
}

json Operation(const Route& route, SchemaBuilder& schemas, std::set<std::string>& operation_ids) {
  const auto* method = route.method;
  const Descriptor* input = method->input_type();
  std::string id = absl::StrCat(method->service()->name(), "_", method->name());
  // An additional binding of the same method needs an id of its own.
  for (int n = 2; !operation_ids.insert(id).second; ++n) {
    id = absl::StrCat(method->service()->name(), "_", method->name(), "_", n);
  }
  const std::string description = ProtoComments().Of(method);
  json op{{"operationId", id},
          {"summary", Summary(method)},
          {"tags", json::array({method->service()->name()})}};
  if (!description.empty()) op["description"] = description;

  json parameters = json::array();
  std::set<std::string> bound;  // top-level fields taken by the path or the body
  for (const PathSegment& seg : route.segments) {
    if (!seg.is_variable) continue;
    if (seg.field_path.size() == 1) bound.insert(seg.field_path.front()->name());
    json param{{"name", ParameterName(seg)},
               {"in", "path"},
               {"required", true},
               {"schema", schemas.FieldSchema(seg.field_path.back())}};
    if (const std::string d = ProtoComments().Of(seg.field_path.back()); !d.empty()) param["description"] = d;
    parameters.push_back(std::move(param));
  }
  if (route.body_field != nullptr) bound.insert(route.body_field->name());
  // Fields bound to neither the path nor the body are query parameters (none when the body is
  // the whole request).
  if (route.body != "*") {
    for (int i = 0; i < input->field_count(); ++i) {
      const FieldDescriptor* field = input->field(i);
      if (bound.count(field->name()) != 0 || !IsQueryable(field)) continue;
      json param{{"name", field->name()}, {"in", "query"}, {"required", false},
                 {"schema", schemas.FieldSchema(field)}};
      if (const std::string d = ProtoComments().Of(field); !d.empty()) param["description"] = d;
      if (field->is_repeated()) {
        param["style"] = "form";
        param["explode"] = true;
      }
      parameters.push_back(std::move(param));
    }
  }
  if (!parameters.empty()) op["parameters"] = std::move(parameters);

  if (route.body == "*") {
    op["requestBody"] = json{{"required", true}, {"content", JsonContent(schemas.MessageSchemaRef(input))}};
  } else if (route.body_field != nullptr) {
    op["requestBody"] = json{{"required", true}, {"content", JsonContent(schemas.FieldSchema(route.body_field))}};
  }
  // The errors every call can meet, then the ones its shape allows: a path names a resource
  // that may not exist; a create may clash with an existing one, and so may a write that
  // names the version it expects (ABORTED).
  json responses{
      {"200", {{"description", "OK"}, {"content", JsonContent(schemas.MessageSchemaRef(method->output_type()))}}},
      {"400", ErrorResponse("BadRequest")},
      {"503", ErrorResponse("Unavailable")},
      {"default", ErrorResponse("Error")}};
  if (HasPathVariables(route)) responses["404"] = ErrorResponse("NotFound");
  if (absl::StartsWith(method->name(), "Create") || input->FindFieldByName("expected_version") != nullptr) {
    responses["409"] = ErrorResponse("Conflict");
  }
  op["responses"] = std::move(responses);
  return op;
}

json BuiltIns() {
  json text_ok{{"description", "OK"}, {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}};
  json status_ok{{"description", "OK"},
                 {"content", JsonContent(json{{"type", "object"},
                                              {"properties", {{"status", {{"type", "string"}}}}}})}};
  json not_ready{{"description", "Not ready: the database does not answer"},
                 {"content", JsonContent(json{{"type", "object"},
                                              {"properties", {{"status", {{"type", "string"}}}}}})}};
  json document_ok{{"description", "OK"}, {"content", JsonContent(json{{"type", "object"}})}};
  auto get = [](const char* id, const char* summary, const char* description, json responses) {
    return json{{"get", {{"operationId", id}, {"summary", summary}, {"description", description},
                         {"tags", json::array({"Gateway"})}, {"responses", std::move(responses)}}}};
  };
  return json{
      {"/healthz", get("Gateway_Healthz", "Liveness", "200 while the process serves HTTP.", {{"200", status_ok}})},
      {"/readyz", get("Gateway_Readyz", "Readiness",
                      "200 when the database answers, 503 otherwise (the reason is in the log, not here).",
                      {{"200", status_ok}, {"503", not_ready}})},
      {"/metrics", get("Gateway_Metrics", "Prometheus metrics",
                       "Counters per hop, in the Prometheus text exposition format.", {{"200", text_ok}})},
      {"/openapi.json", get("Gateway_OpenApi", "This document",
                            "The OpenAPI document of this gateway, generated from the protos it serves.",
                            {{"200", document_ok}})},
  };
}

}  // namespace

std::string OpenApiDocument(const std::vector<Route>& routes) {
  SchemaBuilder schemas;
  schemas.Add(kErrorSchema,
              json{{"type", "object"},
                   {"properties",
                    {{"error",
                      {{"type", "object"},
                       {"properties",
                        {{"code", {{"type", "integer"}, {"format", "int32"}}},
                         {"status", {{"type", "string"}}},
                         {"message", {{"type", "string"}}}}}}}}}});
  json paths = BuiltIns();
  std::set<std::string> operation_ids;
  std::map<std::string, const ServiceDescriptor*> services;
  for (const Route& route : routes) {
    if (route.streaming) continue;  // gRPC only
    paths[OpenApiPath(route)][absl::AsciiStrToLower(route.http_method)] = Operation(route, schemas, operation_ids);
    services[route.method->service()->name()] = route.method->service();
  }
  json tags = json::array();
  for (const auto& [name, service] : services) {
    json tag{{"name", name}};
    // The service's comment, or its file's (the comment on the package line).
    std::string d = ProtoComments().Of(service);
    if (d.empty()) d = ProtoComments().OfFile(service->file());
    if (!d.empty()) tag["description"] = d;
    tags.push_back(std::move(tag));
  }
  tags.push_back(json{{"name", "Gateway"}, {"description", "Health, readiness, metrics and this document."}});
  json doc{{"openapi", "3.0.3"},
           {"info",
            {{"title", "Strata API"},
             {"version", "v1"},
             {"description",
              "The REST face of Strata's gRPC API, transcoded from the strata.v1 protos (google.api.http) "
              "with protobuf's canonical JSON mapping. Errors carry {\"error\":{\"code\",\"status\",\"message\"}}."},
             {"license", {{"name", "Apache-2.0"}, {"url", "https://www.apache.org/licenses/LICENSE-2.0"}}},
             {"contact", {{"name", "Strata maintainers"}}}}},
           {"servers", json::array({json{{"url", "http://127.0.0.1:8080"},
                                         {"description", "strata-cloud with its default --http-listen"}}})},
           {"tags", std::move(tags)},
           {"paths", std::move(paths)},
           {"components", {{"schemas", schemas.Finish()}, {"responses", ErrorResponses()}}}};
  return doc.dump(2);
}

}  // namespace strata::gateway
