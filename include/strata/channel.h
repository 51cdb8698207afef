// The one place where Strata opens an outgoing gRPC connection (the edge's uplink today;
// every later client too), so that transport security and credentials
// are added once, for all of them.
//
// Channels keep the connection alive with HTTP/2 pings during calls (keepalive_time), so a
// peer that vanished without closing the connection (a NAT that forgot it, a cable pulled at
// the far end) is noticed within keepalive_time + keepalive_timeout instead of never; the
// cloud's server accepts pings that often (see kMinPingIntervalAccepted).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

namespace strata {

// What a server must accept so that clients of MakeChannel are never told "too many pings";
// below ChannelOptions' default keepalive_time.
inline constexpr std::chrono::milliseconds kMinPingIntervalAccepted{20000};

struct ChannelOptions {
  std::string address;  // HOST:PORT
  std::chrono::milliseconds keepalive_time{60000};
  std::chrono::milliseconds keepalive_timeout{20000};
  // Largest message this client takes (gRPC's default is 4 MiB).
  int max_receive_bytes = 4 * 1024 * 1024;
  // Insecure today; TLS and client certificates come with the security work.
};

std::shared_ptr<grpc::Channel> MakeChannel(const ChannelOptions& options);

}  // namespace strata
