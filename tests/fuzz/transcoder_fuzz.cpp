// libFuzzer target: the REST transcoder (route matching, path variables, query parameters and
// bodies into request messages). Every input is transcoded or refused with a status; none
// crashes, and no refusal is an internal error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/transcoder.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto transcoder =
      strata::gateway::Transcoder::Create({"strata.v1.DeviceRegistry", "strata.v1.Telemetry", "strata.v1.EdgeSync"});
  if (!transcoder.ok()) std::abort();
  // Input: METHOD \n PATH \n QUERY \n BODY
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  for (int i = 0; i < 3; ++i) {
    const auto nl = in.find('\n');
    if (nl == std::string_view::npos) break;
    parts.push_back(in.substr(0, nl));
    in.remove_prefix(nl + 1);
  }
  while (parts.size() < 3) parts.push_back("");
  auto r = (*transcoder)->Transcode(parts[0], parts[1], parts[2], in);
  if (!r.ok() && r.status().code() == absl::StatusCode::kInternal) std::abort();
  if (r.ok() && r->request == nullptr) std::abort();
  return 0;
}
