// Where a server listens and a client connects: a unix socket or a TCP
// host:port, parsed once for `serve --listen` and the CLI's `--server`.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy {

struct Address {
  enum class Kind { kUnix, kTcp } kind = Kind::kUnix;
  std::string path;  // kUnix: the socket's path
  std::string host;  // kTcp: a name or an address (IPv6 without brackets)
  int port = 0;      // kTcp: 1-65535

  // What gRPC takes: "unix:/run/x.sock", "127.0.0.1:7070", "[::1]:7070".
  std::string GrpcTarget() const;
  // As a user writes it: "unix:///run/x.sock", "tcp://127.0.0.1:7070".
  std::string ToString() const;
  // A TCP address whose host is a loopback address or "localhost".
  bool IsLoopback() const;
};

// Accepts unix:///PATH, unix:PATH, a plain socket path (anything with a
// '/' and no scheme, as grpcurl takes one), tcp://HOST:PORT and HOST:PORT
// ([V6]:PORT for IPv6). Anything else, including a port outside 1-65535 or
// an http:// URL, is InvalidArgument saying what is accepted.
absl::StatusOr<Address> ParseAddress(absl::string_view text);

// "HOST:PORT", or "[HOST]:PORT" when the host is an IPv6 address.
std::string JoinHostPort(absl::string_view host, uint32_t port);

}  // namespace nftproxy
