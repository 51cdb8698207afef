#include "gateway/transcoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <absl/strings/ascii.h>
#include <absl/strings/cord.h>
#include <absl/strings/escaping.h>
#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <google/api/annotations.pb.h>
#include <google/api/http.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <strata/telemetry/json.h>
#include <utf8cpp/utf8.h>
#include <strata/telemetry/model.h>

#include "strata/v1/common.pb.h"
#include "strata/v1/edgesync.pb.h"
#include "strata/v1/registry.pb.h"
#include "strata/v1/telemetry.pb.h"

namespace strata::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MessageFactory;
using google::protobuf::MethodDescriptor;
using google::protobuf::Reflection;

// Debian's abseil has its own absl::string_view, which std::string_view does not convert to,
// so the few string helpers needed here are local.
void Append(std::string& out, std::string_view s) { out.append(s.data(), s.size()); }
void Append(std::string& out, const google::protobuf::StringPiece& s) { out.append(s.data(), s.size()); }
#ifndef ABSL_USES_STD_STRING_VIEW
void Append(std::string& out, const absl::string_view& s) { out.append(s.data(), s.size()); }
#endif
void Append(std::string& out, const char* s) { out.append(s); }
void Append(std::string& out, const std::string& s) { out.append(s); }

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (Append(out, args), ...);
  return out;
}

std::string Join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) Append(out, separator);
    out += parts[i];
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = s.find(separator, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

// Status payloads that carry what an absl::Status code cannot: the HTTP status of a "method not
// allowed" and the Allow header that goes with it.
constexpr char kHttpStatusPayload[] = "type.strata.dev/gateway.http_status";
constexpr char kAllowPayload[] = "type.strata.dev/gateway.allow";

absl::Status MethodNotAllowed(std::string_view method, std::string_view path,
                              const std::vector<std::string>& allowed) {
  return WithHttpStatus(absl::UnimplementedError(Cat("method ", method, " is not allowed on ", path,
                                                     "; allowed: ", Join(allowed, ", "))),
                        405, Join(allowed, ", "));
}

// Finds a field by its proto name or its JSON name, as query parameters may use either.
const FieldDescriptor* FindField(const Descriptor* message, std::string_view name) {
  if (const FieldDescriptor* f = message->FindFieldByName(std::string(name))) return f;
  for (int i = 0; i < message->field_count(); ++i) {
    if (message->field(i)->json_name() == name) return message->field(i);
  }
  return nullptr;
}

// Resolves a dotted field path ("device.device_id"): every part but the last must be a
// singular message field.
absl::StatusOr<std::vector<const FieldDescriptor*>> ResolveFieldPath(const Descriptor* message,
                                                                     std::string_view dotted) {
  std::vector<const FieldDescriptor*> path;
  const Descriptor* current = message;
  std::vector<std::string_view> parts = Split(dotted, '.');
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (current == nullptr) {
      return absl::InvalidArgumentError(Cat("field path \"", dotted, "\" goes through a non-message field"));
    }
    const FieldDescriptor* field = FindField(current, parts[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          Cat("no field \"", parts[i], "\" in ", current->full_name(), " (from \"", dotted, "\")"));
    }
    const bool last = i + 1 == parts.size();
    if (!last && (field->is_repeated() || field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE)) {
      return absl::InvalidArgumentError(
          Cat("field path \"", dotted, "\" goes through \"", parts[i], "\", which is not a singular message"));
    }
    path.push_back(field);
    current = field->message_type();
  }
  return path;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses a path template: "/v1/devices/{device.device_id}/telemetry:verb". Variables are
// "{field.path}" or "{field.path=*}" and match one segment.
absl::Status ParseTemplate(const Descriptor* input, std::string_view tmpl, Route& route) {
  auto malformed = [&](const std::string& why) {
    return absl::InvalidArgumentError(Cat("malformed path template \"", tmpl, "\" of ",
                                                   route.method->full_name(), ": ", why));
  };
  if (tmpl.empty() || tmpl.front() != '/') return malformed("must start with '/'");
  std::string_view rest = tmpl.substr(1);
  // A custom verb is a ':' after the last '/' and outside any variable.
  const std::size_t last_slash = rest.rfind('/');
  const std::size_t last_brace = rest.rfind('}');
  std::size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash) &&
      (last_brace == std::string_view::npos || colon > last_brace)) {
    route.verb = std::string(rest.substr(colon + 1));
    if (route.verb.empty()) return malformed("empty custom verb");
    rest = rest.substr(0, colon);
  }
  for (std::string_view part : Split(rest, '/')) {
    if (part.empty()) return malformed("empty segment");
    PathSegment segment;
    if (part.front() == '{') {
      if (part.back() != '}') return malformed("a variable must be a whole segment");
      std::string_view name = part.substr(1, part.size() - 2);
      if (const std::size_t eq = name.find('='); eq != std::string_view::npos) {
        if (name.substr(eq + 1) != "*") return malformed("only single-segment variables are supported");
        name = name.substr(0, eq);
      }
      auto fields = ResolveFieldPath(input, name);
      if (!fields.ok()) return malformed(std::string(fields.status().message()));
      const FieldDescriptor* leaf = fields->back();
      if (leaf->is_repeated() || leaf->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        return malformed(Cat("variable \"", name, "\" must be a singular scalar field"));
      }
      segment.is_variable = true;
      segment.variable_name = std::string(name);
      segment.field_path = *std::move(fields);
    } else {
      if (part.find_first_of("{}*") != std::string_view::npos) return malformed("unsupported segment");
      segment.literal = std::string(part);
    }
    route.segments.push_back(std::move(segment));
  }
  return absl::OkStatus();
}

absl::Status AddRoute(const MethodDescriptor* method, const google::api::HttpRule& rule,
                      std::vector<Route>& routes) {
  Route route;
  route.method = method;
  route.streaming = method->client_streaming() || method->server_streaming();
  std::string tmpl;
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet: route.http_method = "GET"; tmpl = rule.get(); break;
    case google::api::HttpRule::kPut: route.http_method = "PUT"; tmpl = rule.put(); break;
    case google::api::HttpRule::kPost: route.http_method = "POST"; tmpl = rule.post(); break;
    case google::api::HttpRule::kDelete: route.http_method = "DELETE"; tmpl = rule.delete_(); break;
    case google::api::HttpRule::kPatch: route.http_method = "PATCH"; tmpl = rule.patch(); break;
    case google::api::HttpRule::kCustom:
      route.http_method = absl::AsciiStrToUpper(rule.custom().kind());
      tmpl = rule.custom().path();
      break;
    default:
      return absl::InvalidArgumentError(Cat("the http rule of ", method->full_name(), " has no pattern"));
  }
  if (!rule.response_body().empty()) {
    return absl::InvalidArgumentError(
        Cat("the http rule of ", method->full_name(), " sets response_body, which is not supported"));
  }
  route.path_template = tmpl;
  if (absl::Status s = ParseTemplate(method->input_type(), tmpl, route); !s.ok()) return s;
  route.body = rule.body();
  if (!route.body.empty() && route.body != "*") {
    route.body_field = method->input_type()->FindFieldByName(route.body);
    if (route.body_field == nullptr) {
      return absl::InvalidArgumentError(Cat("the http rule of ", method->full_name(), " names body field \"",
                                                     route.body, "\", which ", method->input_type()->full_name(),
                                                     " does not have"));
    }
  }
  routes.push_back(std::move(route));
  return absl::OkStatus();
}

// Converts one textual value (a query parameter or a path variable) into `field` of `message`:
// set for a singular field, appended for a repeated one. The error names `name`.
absl::Status SetScalar(Message& message, const FieldDescriptor* field, std::string_view name, const std::string& value) {
  const Reflection* r = message.GetReflection();
  const bool rep = field->is_repeated();
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat("invalid value \"", value, "\" for \"", name, "\": ", what));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string v = value;
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        std::string decoded;
        if (!absl::Base64Unescape(value, &decoded) && !absl::WebSafeBase64Unescape(value, &decoded)) {
          return bad("expected base64");
        }
        v = std::move(decoded);
      }
      rep ? r->AddString(&message, field, std::move(v)) : r->SetString(&message, field, std::move(v));
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      std::int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("expected a 32-bit integer");
      rep ? r->AddInt32(&message, field, v) : r->SetInt32(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      std::int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("expected a 64-bit integer");
      rep ? r->AddInt64(&message, field, v) : r->SetInt64(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      std::uint32_t v;
      if (value.starts_with('-') || !absl::SimpleAtoi(value, &v)) return bad("expected an unsigned 32-bit integer");
      rep ? r->AddUInt32(&message, field, v) : r->SetUInt32(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      std::uint64_t v;
      if (value.starts_with('-') || !absl::SimpleAtoi(value, &v)) return bad("expected an unsigned 64-bit integer");
      rep ? r->AddUInt64(&message, field, v) : r->SetUInt64(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return bad("expected a number");
      rep ? r->AddDouble(&message, field, v) : r->SetDouble(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return bad("expected a number");
      rep ? r->AddFloat(&message, field, v) : r->SetFloat(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (value == "true" || value == "1") {
        v = true;
      } else if (value == "false" || value == "0") {
        v = false;
      } else {
        return bad("expected true or false");
      }
      rep ? r->AddBool(&message, field, v) : r->SetBool(&message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* type = field->enum_type();
      const auto* ev = EnumValueByName(type, value);
      if (ev == nullptr) {
        int number;
        if (absl::SimpleAtoi(value, &number)) ev = type->FindValueByNumber(number);
      }
      if (ev == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < type->value_count(); ++i) names.push_back(type->value(i)->name());
        return bad(Cat("expected one of ", Join(names, ", ")));
      }
      rep ? r->AddEnumValue(&message, field, ev->number()) : r->SetEnumValue(&message, field, ev->number());
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return absl::InvalidArgumentError(Cat("\"", name, "\" names a message field, which cannot be set from text"));
}

// Well-known types whose JSON form is a string can be given as one query parameter.
bool IsStringWellKnownType(const Descriptor* type) {
  const std::string& n = type->full_name();
  return n == "google.protobuf.FieldMask" || n == "google.protobuf.Timestamp" || n == "google.protobuf.Duration";
}

// Walks `path` from `root`, creating intermediate messages, and returns the message that holds
// the last field.
Message* MutableParent(Message& root, const std::vector<const FieldDescriptor*>& path) {
  Message* current = &root;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    current = current->GetReflection()->MutableMessage(current, path[i]);
  }
  return current;
}

google::protobuf::util::JsonParseOptions StrictJson() {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  return options;
}

absl::Status FromProtobufStatus(const google::protobuf::util::Status& s, std::string_view context) {
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(Cat(context, ": ", s.message()));
}

absl::Status ApplyQueryParameter(Message& request, std::string_view raw_name, std::string_view raw_value) {
  auto name = PercentDecode(raw_name, true);
  if (!name.ok()) return name.status();
  auto fields = ResolveFieldPath(request.GetDescriptor(), *name);
  if (!fields.ok()) {
    return absl::InvalidArgumentError(Cat("unknown query parameter \"", *name, "\": ", fields.status().message()));
  }
  const FieldDescriptor* leaf = fields->back();
  Message* parent = MutableParent(request, *fields);
  if (leaf->is_map()) {
    return absl::InvalidArgumentError(Cat("query parameter \"", *name, "\" names a map field, which cannot be set from the query"));
  }
  if (leaf->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (leaf->is_repeated() || !IsStringWellKnownType(leaf->message_type())) {
      return absl::InvalidArgumentError(Cat("query parameter \"", *name, "\" names a message field, which cannot be set from the query"));
    }
    auto value = PercentDecode(raw_value, true);
    if (!value.ok()) return absl::InvalidArgumentError(Cat("query parameter \"", *name, "\": ", value.status().message()));
    // Quoted as a JSON string for protobuf's parser; a value that is not UTF-8 cannot be one
    // (nlohmann's dump() would throw, which took the process down: found by transcoder_fuzz).
    if (!utf8::is_valid(value->begin(), value->end())) {
      return absl::InvalidArgumentError(Cat("query parameter \"", *name, "\" is not valid UTF-8"));
    }
    Message* target = parent->GetReflection()->MutableMessage(parent, leaf);
    return FromProtobufStatus(
        google::protobuf::util::JsonStringToMessage(nlohmann::json(*value).dump(), target, StrictJson()),
        Cat("invalid value for query parameter \"", *name, "\""));
  }
  // A repeated field takes repeated parameters and comma-separated lists; the split happens
  // before decoding so that an encoded comma (%2C) stays inside a value.
  std::vector<std::string_view> raw_values;
  if (leaf->is_repeated()) {
    raw_values = Split(raw_value, ',');
  } else {
    raw_values.push_back(raw_value);
  }
  for (std::string_view raw : raw_values) {
    auto value = PercentDecode(raw, true);
    if (!value.ok()) return absl::InvalidArgumentError(Cat("query parameter \"", *name, "\": ", value.status().message()));
    if (absl::Status s = SetScalar(*parent, leaf, *name, *value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// strata.v1.Value (a telemetry value) may be written in JSON as the bare scalar it holds, the
// shape devices send: 21 is an int_value, 21.5 / 21.0 / 1e3 a double_value, true a
// bool_value, "on" a string_value, typed by the telemetry model (which refuses null, lists,
// objects and integers beyond int64, naming the field). This rewrites each such scalar into
// the canonical form protobuf's parser takes ({"intValue":"21"}: exact for every int64), for
// any field of any request that holds a Value, however deep.
absl::Status ExpandValueShorthand(const Descriptor* type, nlohmann::json& node, const std::string& path);

absl::Status ExpandMessage(const Descriptor* type, nlohmann::json& node, const std::string& path) {
  if (type == v1::Value::descriptor()) {
    // The canonical object form ({"int_value":"21"}, as responses print it) is taken too.
    if (node.is_object() && node.size() == 1 && type->FindFieldByName(node.begin().key()) != nullptr) {
      return absl::OkStatus();
    }
    if (node.is_object() && node.size() == 1 && type->FindFieldByCamelcaseName(node.begin().key()) != nullptr) {
      return absl::OkStatus();
    }
    v1::Value value;
    if (auto verdict = telemetry::ValueFromJson(node, &value); !verdict.ok()) return verdict.ToStatus(path);
    switch (value.kind_case()) {
      case v1::Value::kIntValue: node = {{"intValue", std::to_string(value.int_value())}}; break;
      case v1::Value::kDoubleValue: node = {{"doubleValue", value.double_value()}}; break;
      case v1::Value::kBoolValue: node = {{"boolValue", value.bool_value()}}; break;
      case v1::Value::kStringValue: node = {{"stringValue", value.string_value()}}; break;
      case v1::Value::KIND_NOT_SET: break;  // ValueFromJson always sets one
    }
    return absl::OkStatus();
  }
  return ExpandValueShorthand(type, node, path);
}

absl::Status ExpandValueShorthand(const Descriptor* type, nlohmann::json& node, const std::string& path) {
  if (!node.is_object() || type->file()->package() != "strata.v1") return absl::OkStatus();
  for (auto& [name, child] : node.items()) {
    const FieldDescriptor* f = type->FindFieldByName(name);
    if (f == nullptr) f = type->FindFieldByCamelcaseName(name);
    if (f != nullptr && f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
      // Short enum names (DESC for SORT_ORDER_DESC) become the full ones protobuf's parser takes.
      auto rename = [&](nlohmann::json& v) {
        if (!v.is_string()) return;
        if (const auto* ev = EnumValueByName(f->enum_type(), v.get_ref<const std::string&>())) v = ev->name();
      };
      if (f->is_repeated() && child.is_array()) {
        for (auto& v : child) rename(v);
      } else {
        rename(child);
      }
      continue;
    }
    if (f == nullptr || f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;  // protobuf reports it
    const std::string at = path.empty() ? name : Cat(path, ".", name);
    if (f->is_map()) {
      const FieldDescriptor* value_field = f->message_type()->map_value();
      if (value_field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || !child.is_object()) continue;
      for (auto& [key, v] : child.items()) {
        if (auto s = ExpandMessage(value_field->message_type(), v, Cat(at, ".", key)); !s.ok()) return s;
      }
    } else if (f->is_repeated()) {
      if (!child.is_array()) continue;
      for (std::size_t i = 0; i < child.size(); ++i) {
        if (auto s = ExpandMessage(f->message_type(), child[i], Cat(at, "[", std::to_string(i), "]")); !s.ok()) return s;
      }
    } else if (auto s = ExpandMessage(f->message_type(), child, at); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return absl::ascii_isspace(c); });
}

absl::Status ApplyBody(const Route& route, Message& request, std::string_view body) {
  if (route.body.empty()) {
    if (!IsBlank(body)) {
      return absl::InvalidArgumentError(Cat(route.http_method, " ", route.path_template, " takes no request body"));
    }
    return absl::OkStatus();
  }
  if (IsBlank(body)) return absl::OkStatus();
  // Parsed first, with bounded depth and exact number typing: the body can never be more
  // than one JSON value, which is what makes wrapping it below safe ("[...], \"other\": ..."
  // must not set other fields), and a hostile body costs at most its size.
  auto parsed = telemetry::ParseBoundedJson(body);
  if (!parsed.ok()) return absl::InvalidArgumentError(Cat("request body is not valid JSON: ", parsed.status().message()));
  nlohmann::json doc = *std::move(parsed);
  if (route.body == "*") {
    if (auto s = ExpandValueShorthand(request.GetDescriptor(), doc, ""); !s.ok()) return s;
    return FromProtobufStatus(google::protobuf::util::JsonStringToMessage(doc.dump(), &request, StrictJson()),
                              "invalid request body");
  }
  const FieldDescriptor* field = route.body_field;
  if (!field->is_repeated() && field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (auto s = ExpandValueShorthand(field->message_type(), doc, ""); !s.ok()) return s;
    Message* target = request.GetReflection()->MutableMessage(&request, field);
    return FromProtobufStatus(google::protobuf::util::JsonStringToMessage(doc.dump(), target, StrictJson()),
                              Cat("invalid request body (", field->name(), ")"));
  }
  if (field->is_repeated() && !field->is_map() && !doc.is_array()) {
    // protobuf's parser would take a lone object as a one-element list; the contract is a
    // list, so hold to it.
    return absl::InvalidArgumentError(
        Cat("invalid request body: expected a JSON array (the \"", field->name(), "\" list)"));
  }
  // Lists and scalars: parse {"<field>": <body>} into the request. Errors name the elements
  // as the client wrote them: "points[1].values.t", not "body.points[1]...".
  nlohmann::json wrapped = nlohmann::json::object();
  wrapped[field->name()] = std::move(doc);
  if (auto s = ExpandValueShorthand(request.GetDescriptor(), wrapped, ""); !s.ok()) return s;
  return FromProtobufStatus(google::protobuf::util::JsonStringToMessage(wrapped.dump(), &request, StrictJson()),
                            "invalid request body");
}

struct Match {
  const Route* route = nullptr;
  std::vector<std::string> values;  // raw value of each variable, in segment order
  int literals = 0;
};

// Matches `path` (still encoded, without the query) against one route.
bool MatchPath(const Route& route, std::string_view path, Match& match) {
  if (path.empty() || path.front() != '/') return false;
  std::string_view rest = path.substr(1);
  if (!route.verb.empty()) {
    const std::string suffix = Cat(":", route.verb);
    if (!rest.ends_with(suffix)) return false;
    rest.remove_suffix(suffix.size());
  }
  std::vector<std::string_view> parts = Split(rest, '/');
  if (parts.size() != route.segments.size()) return false;
  match = Match{&route, {}, 0};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const PathSegment& seg = route.segments[i];
    if (seg.is_variable) {
      if (parts[i].empty()) return false;
      match.values.emplace_back(parts[i]);
    } else {
      if (parts[i] != seg.literal) return false;
      ++match.literals;
    }
  }
  return true;
}

}  // namespace

std::string Route::GrpcMethodPath() const {
  return Cat("/", method->service()->full_name(), "/", method->name());
}

namespace {

// "SortOrder" -> "SORT_ORDER_": the prefix buf's STANDARD lint asks of every value.
std::string EnumValuePrefix(const google::protobuf::EnumDescriptor* type) {
  std::string out;
  const std::string& name = type->name();
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (absl::ascii_isupper(c) && i > 0 && !absl::ascii_isupper(name[i - 1])) out += '_';
    out += absl::ascii_toupper(c);
  }
  return out + "_";
}

}  // namespace

const google::protobuf::EnumValueDescriptor* EnumValueByName(const google::protobuf::EnumDescriptor* type,
                                                             std::string_view name) {
  if (const auto* ev = type->FindValueByName(std::string(name))) return ev;
  if (name.empty() || name.ends_with("UNSPECIFIED")) return nullptr;
  return type->FindValueByName(Cat(EnumValuePrefix(type), name));
}

std::vector<std::string> EnumShortNames(const google::protobuf::EnumDescriptor* type) {
  const std::string prefix = EnumValuePrefix(type);
  std::vector<std::string> out;
  for (int i = 0; i < type->value_count(); ++i) {
    const std::string& full = type->value(i)->name();
    if (absl::StartsWith(full, prefix) && !absl::EndsWith(full, "_UNSPECIFIED") && full.size() > prefix.size()) {
      out.push_back(full.substr(prefix.size()));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ForwardedMetadata(const std::vector<Header>& headers) {
  constexpr std::string_view kPrefix = "grpc-metadata-";
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [raw_name, value] : headers) {
    std::string name = absl::AsciiStrToLower(std::string(raw_name));
    if (name.starts_with(kPrefix)) {
      name.erase(0, kPrefix.size());
    } else if (name != "authorization" && name != "x-request-id") {
      continue;
    }
    const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.';
    });
    if (!name_ok || name.starts_with("grpc-") || name.ends_with("-bin")) {
      return absl::InvalidArgumentError(Cat("header ", std::string(raw_name), " cannot be forwarded as gRPC metadata"));
    }
    if (!std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; })) {
      return absl::InvalidArgumentError(Cat("header ", std::string(raw_name), " holds characters that are not printable ASCII"));
    }
    out.emplace_back(std::move(name), std::string(value));
  }
  return out;
}

absl::StatusOr<std::string> PercentDecode(std::string_view in, bool plus_as_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      const int hi = i + 2 < in.size() ? HexValue(in[i + 1]) : -1;
      const int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(Cat("malformed percent-encoding in \"", in, "\""));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Transcoder>> Transcoder::Create(const std::vector<std::string>& services) {
  // Generated files register their descriptors from static initializers, and a static link
  // drops the object files nothing refers to. Services are looked up by name here, so refer to
  // every strata.v1 file to keep it in the binary.
  for (const Descriptor* linked : {v1::Value::descriptor(), v1::Device::descriptor(),
                                   v1::TelemetryPoint::descriptor(), v1::EdgeMessage::descriptor()}) {
    (void)linked;
  }
  std::vector<Route> routes;
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (service == nullptr) {
      return absl::InvalidArgumentError(Cat("unknown service \"", name, "\" (not linked into this binary?)"));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* method = service->method(i);
      if (!method->options().HasExtension(google::api::http)) continue;  // gRPC only
      const google::api::HttpRule& rule = method->options().GetExtension(google::api::http);
      if (absl::Status s = AddRoute(method, rule, routes); !s.ok()) return s;
      for (const google::api::HttpRule& extra : rule.additional_bindings()) {
        if (absl::Status s = AddRoute(method, extra, routes); !s.ok()) return s;
      }
    }
  }
  return std::unique_ptr<Transcoder>(new Transcoder(std::move(routes)));
}

absl::StatusOr<TranscodedRequest> Transcoder::Transcode(std::string_view http_method, std::string_view path,
                                                        std::string_view query, std::string_view body) const {
  // The most specific match wins: the one with the most literal segments, then the first.
  const Match* best = nullptr;
  Match candidate;
  Match chosen;
  std::vector<std::string> allowed;
  for (const Route& route : routes_) {
    if (!MatchPath(route, path, candidate)) continue;
    if (route.http_method != http_method) {
      if (std::find(allowed.begin(), allowed.end(), route.http_method) == allowed.end()) {
        allowed.push_back(route.http_method);
      }
      continue;
    }
    if (best == nullptr || candidate.literals > best->literals) {
      chosen = candidate;
      best = &chosen;
    }
  }
  if (best == nullptr) {
    if (!allowed.empty()) return MethodNotAllowed(http_method, path, allowed);
    return absl::NotFoundError(Cat("no route for ", http_method, " ", path));
  }
  const Route& route = *best->route;
  if (route.streaming) {
    return absl::UnimplementedError(Cat(route.method->full_name(),
                                                 " is a streaming method and is available over gRPC only, not REST"));
  }

  TranscodedRequest out;
  out.grpc_method = route.GrpcMethodPath();
  out.response_type = route.method->output_type();
  const Message* prototype = MessageFactory::generated_factory()->GetPrototype(route.method->input_type());
  if (prototype == nullptr) {
    return absl::InternalError(Cat("no generated type for ", route.method->input_type()->full_name()));
  }
  out.request.reset(prototype->New());
  Message& request = *out.request;

  if (absl::Status s = ApplyBody(route, request, body); !s.ok()) return s;

  if (!query.empty()) {
    for (std::string_view param : Split(query, '&')) {
      if (param.empty()) continue;
      const std::size_t eq = param.find('=');
      const std::string_view name = param.substr(0, eq);
      const std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
      if (absl::Status s = ApplyQueryParameter(request, name, value); !s.ok()) return s;
    }
  }

  std::size_t v = 0;
  for (const PathSegment& seg : route.segments) {
    if (!seg.is_variable) continue;
    auto value = PercentDecode(best->values[v++], false);
    if (!value.ok()) {
      return absl::InvalidArgumentError(Cat("path variable \"", seg.variable_name, "\": ", value.status().message()));
    }
    Message* parent = MutableParent(request, seg.field_path);
    if (absl::Status s = SetScalar(*parent, seg.field_path.back(), seg.variable_name, *value); !s.ok()) return s;
  }
  return out;
}

absl::Status WithHttpStatus(absl::Status status, int http_status, const std::string& allow) {
  status.SetPayload(kHttpStatusPayload, absl::Cord(std::to_string(http_status)));
  if (!allow.empty()) status.SetPayload(kAllowPayload, absl::Cord(allow));
  return status;
}

int HttpStatusFor(const absl::Status& status) {
  if (auto http = status.GetPayload(kHttpStatusPayload)) {
    int code;
    if (absl::SimpleAtoi(std::string(*http), &code)) return code;
  }
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string AllowedMethods(const absl::Status& status) {
  if (auto allow = status.GetPayload(kAllowPayload)) return std::string(*allow);
  return {};
}

std::string ErrorJson(const absl::Status& status) {
  nlohmann::json body;
  body["error"]["code"] = HttpStatusFor(status);
  body["error"]["status"] = absl::StatusCodeToString(status.code());
  body["error"]["message"] = std::string(status.message());
  // Replace rather than throw on invalid UTF-8: messages may quote client input.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::string> ResponseToJson(const Descriptor* response_type, const std::string& serialized) {
  const Message* prototype = MessageFactory::generated_factory()->GetPrototype(response_type);
  if (prototype == nullptr) {
    return absl::InternalError(Cat("no generated type for ", response_type->full_name()));
  }
  std::unique_ptr<Message> response(prototype->New());
  if (!response->ParseFromString(serialized)) {
    return absl::InternalError(Cat("the service returned a malformed ", response_type->full_name()));
  }
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (auto s = google::protobuf::util::MessageToJsonString(*response, &json, options); !s.ok()) {
    return absl::InternalError(Cat("cannot print ", response_type->full_name(), " as JSON: ", s.message()));
  }
  return json;
}

}  // namespace strata::gateway
