// The strata.v1 protos as a serialized google.protobuf.FileDescriptorSet that keeps their
// comments (protoc --include_source_info --include_imports), embedded at build time. The
// generated code's descriptors carry no comments; the OpenAPI document takes its summaries
// and descriptions from these.
#pragma once

#include <string_view>

namespace strata::v1 {

std::string_view DescriptorSetWithSourceInfo();

}  // namespace strata::v1
