#include "support/mosquitto.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace strata::testing {
namespace {

bool CanConnect(unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string MosquittoBinary() {
  for (const char* p : {"/usr/sbin/mosquitto", "/usr/bin/mosquitto"}) {
    if (std::filesystem::exists(p)) return p;
  }
  throw std::runtime_error("mosquitto is not installed (tools/install-deps.sh installs it)");
}

}  // namespace

MosquittoServer::MosquittoServer() : port_(FreePort()) {
  // Persistence on, so that sessions and their queued QoS 1 messages survive a restart of the
  // broker, as on a gateway. Running as root, mosquitto would switch to the user
  // 'mosquitto'; `user root` keeps it able to write its temporary directory.
  std::ofstream conf(dir_.path() + "/mosquitto.conf");
  conf << "listener " << port_ << " 127.0.0.1\n"
       << "allow_anonymous true\n"
       << "persistence true\n"
       << "persistence_location " << dir_.path() << "/\n"
       << "autosave_interval 1\n"
       << "max_queued_messages 0\n"
       << "max_inflight_messages 100\n"
       << "log_dest stderr\n";
  if (::geteuid() == 0) conf << "user root\n";
  conf.close();
  Start();
}

MosquittoServer::~MosquittoServer() { Stop(); }

void MosquittoServer::Start() {
  process_ = std::make_unique<Process>(
      std::vector<std::string>{MosquittoBinary(), "-c", dir_.path() + "/mosquitto.conf"},
      dir_.path() + "/mosquitto." + std::to_string(++starts_) + ".log");
  if (!WaitFor([&] { return CanConnect(port_) || !process_->Running(); }, std::chrono::seconds(10)) ||
      !process_->Running()) {
    throw std::runtime_error("mosquitto did not start: " + process_->Log());
  }
}

void MosquittoServer::Stop() {
  if (process_ && process_->Running()) process_->Stop(SIGTERM);
}

void MosquittoServer::Restart() {
  Stop();
  Start();
}

}  // namespace strata::testing
