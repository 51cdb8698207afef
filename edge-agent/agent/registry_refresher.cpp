#include "agent/registry_refresher.h"

#include <grpcpp/grpcpp.h>
#include <strata/channel.h>
#include <spdlog/spdlog.h>

#include "strata/v1/registry.grpc.pb.h"

namespace strata::edge {

RegistryRefresher::RegistryRefresher(std::string cloud_address, DeviceDirectory& directory,
                                     std::chrono::milliseconds interval)
    : cloud_address_(std::move(cloud_address)), directory_(directory), interval_(interval) {
  thread_ = std::thread([this] {
    while (!stop_.stopped()) {
      const bool ok = RefreshOnce();
      stop_.WaitFor(ok ? interval_ : std::chrono::milliseconds(1000));
    }
  });
}

RegistryRefresher::~RegistryRefresher() { Stop(); }

void RegistryRefresher::Stop() {
  stop_.Stop();
  if (thread_.joinable()) thread_.join();
}

bool RegistryRefresher::RefreshOnce() {
  auto stub = v1::DeviceRegistry::NewStub(MakeChannel({.address = cloud_address_}));
  std::set<std::string> devices;
  v1::ListDevicesRequest req;
  req.set_page_size(1000);
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListDevicesResponse res;
    auto status = stub->ListDevices(&ctx, req, &res);
    if (!status.ok()) {
      spdlog::debug("device directory: cannot list devices: {}", status.error_message());
      return false;
    }
    for (const auto& d : res.devices()) devices.insert(d.device_id());
    req.set_page_token(res.next_page_token());
  } while (!req.page_token().empty() && !stop_.stopped());
  if (stop_.stopped()) return true;
  directory_.Replace(std::move(devices));
  return true;
}

}  // namespace strata::edge
