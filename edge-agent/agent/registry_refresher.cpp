#include "agent/registry_refresher.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "strata/v1/registry.grpc.pb.h"

namespace strata::edge {

RegistryRefresher::RegistryRefresher(std::string cloud_address, DeviceDirectory& directory,
                                     std::chrono::milliseconds interval)
    : cloud_address_(std::move(cloud_address)), directory_(directory), interval_(interval) {
  thread_ = std::thread([this] {
    while (!stopping_) {
      const bool ok = RefreshOnce();
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, ok ? interval_ : std::chrono::milliseconds(1000), [this] { return stopping_.load(); });
    }
  });
}

RegistryRefresher::~RegistryRefresher() { Stop(); }

void RegistryRefresher::Stop() {
  stopping_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool RegistryRefresher::RefreshOnce() {
  auto stub = v1::DeviceRegistry::NewStub(grpc::CreateChannel(cloud_address_, grpc::InsecureChannelCredentials()));
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
  } while (!req.page_token().empty() && !stopping_);
  if (stopping_) return true;
  directory_.Replace(std::move(devices));
  return true;
}

}  // namespace strata::edge
