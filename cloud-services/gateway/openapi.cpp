#include "gateway/openapi.h"

#include <deque>
#include <map>
#include <optional>
#include <set>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <nlohmann/json.hpp>

namespace strata::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

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
      schemas_[type->full_name()] = json{{"type", "string"}, {"enum", values}};
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
      // 64-bit integers are strings in the canonical JSON mapping (the parser takes numbers too).
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
        return json{{"type", "string"}, {"format", "int64"}};
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        return json{{"type", "string"}, {"format", "uint64"}};
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
        properties[type->field(i)->name()] = FieldSchema(type->field(i));
      }
      json schema{{"type", "object"}, {"properties", properties}};
      if (type->full_name() == "strata.v1.Value") {
        // A telemetry value: responses print the object form; requests may also give the
        // bare scalar (21 an int64, 21.5 a double, true, "on"), as the transcoder reads it.
        schema["maxProperties"] = 1;
        schema = json{{"anyOf", json::array({json{{"type", "number"}}, json{{"type", "boolean"}},
                                             json{{"type", "string"}}, schema})}};
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
    if (n == "google.protobuf.Int64Value" || n == "google.protobuf.UInt64Value") {
      return json{{"type", "string"}, {"format", "int64"}};
    }
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

std::string OpenApiPath(const Route& route) {
  std::string path;
  for (const PathSegment& seg : route.segments) {
    absl::StrAppend(&path, "/", seg.is_variable ? absl::StrCat("{", seg.variable_name, "}") : seg.literal);
  }
  if (!route.verb.empty()) absl::StrAppend(&path, ":", route.verb);
  return path;
}

json JsonContent(json schema) { return json{{"application/json", {{"schema", std::move(schema)}}}}; }

json Operation(const Route& route, SchemaBuilder& schemas, std::set<std::string>& operation_ids) {
  const auto* method = route.method;
  const Descriptor* input = method->input_type();
  std::string id = absl::StrCat(method->service()->name(), "_", method->name());
  // An additional binding of the same method needs an id of its own.
  for (int n = 2; !operation_ids.insert(id).second; ++n) {
    id = absl::StrCat(method->service()->name(), "_", method->name(), "_", n);
  }
  json op{{"operationId", id}, {"tags", json::array({method->service()->name()})}};

  json parameters = json::array();
  std::set<std::string> bound;  // top-level fields taken by the path or the body
  for (const PathSegment& seg : route.segments) {
    if (!seg.is_variable) continue;
    if (seg.field_path.size() == 1) bound.insert(seg.field_path.front()->name());
    parameters.push_back(json{{"name", seg.variable_name},
                              {"in", "path"},
                              {"required", true},
                              {"schema", schemas.FieldSchema(seg.field_path.back())}});
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
  op["responses"] = json{
      {"200", {{"description", "OK"}, {"content", JsonContent(schemas.MessageSchemaRef(method->output_type()))}}},
      {"default", {{"description", "Error"}, {"content", JsonContent(json{{"$ref", Ref(kErrorSchema)}})}}}};
  return op;
}

json BuiltIns() {
  json text_ok{{"description", "OK"}, {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}};
  json status_ok{{"description", "OK"},
                 {"content", JsonContent(json{{"type", "object"},
                                              {"properties", {{"status", {{"type", "string"}}}}}})}};
  return json{
      {"/healthz", {{"get", {{"operationId", "Gateway_Healthz"}, {"tags", json::array({"Gateway"})},
                             {"responses", {{"200", status_ok}}}}}}},
      {"/readyz", {{"get", {{"operationId", "Gateway_Readyz"}, {"tags", json::array({"Gateway"})},
                            {"responses", {{"200", status_ok}, {"503", {{"description", "Not ready"}}}}}}}}},
      {"/metrics", {{"get", {{"operationId", "Gateway_Metrics"}, {"tags", json::array({"Gateway"})},
                             {"responses", {{"200", text_ok}}}}}}},
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
  for (const Route& route : routes) {
    if (route.streaming) continue;  // gRPC only
    paths[OpenApiPath(route)][absl::AsciiStrToLower(route.http_method)] = Operation(route, schemas, operation_ids);
  }
  json doc{{"openapi", "3.0.3"},
           {"info", {{"title", "Strata API"}, {"version", "v1"}}},
           {"paths", std::move(paths)},
           {"components", {{"schemas", schemas.Finish()}}}};
  return doc.dump(2);
}

}  // namespace strata::gateway
