#include "common/address.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace nftproxy {

namespace {

constexpr char kAccepted[] = "want unix:///PATH, a socket path, tcp://HOST:PORT or HOST:PORT";

absl::Status Bad(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": ", why, " (", kAccepted, ")"));
}

absl::StatusOr<Address> ParseHostPort(absl::string_view text, absl::string_view hp) {
  Address a;
  a.kind = Address::Kind::kTcp;
  absl::string_view host, port;
  if (absl::StartsWith(hp, "[")) {
    const size_t close = hp.find(']');
    if (close == absl::string_view::npos || close + 1 >= hp.size() || hp[close + 1] != ':') {
      return Bad(text, "an IPv6 host is written [ADDRESS]:PORT");
    }
    host = hp.substr(1, close - 1);
    port = hp.substr(close + 2);
  } else {
    const size_t colon = hp.rfind(':');
    if (colon == absl::string_view::npos) return Bad(text, "no port");
    host = hp.substr(0, colon);
    port = hp.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) return Bad(text, "an IPv6 host is written [ADDRESS]:PORT");
  }
  if (host.empty()) return Bad(text, "no host");
  if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) || port.size() > 5 ||
      !absl::SimpleAtoi(port, &a.port) || a.port < 1 || a.port > 65535) {
    return Bad(text, absl::StrCat("port \"", port, "\" is not a number from 1 to 65535"));
  }
  a.host = std::string(host);
  return a;
}

}  // namespace

absl::StatusOr<Address> ParseAddress(absl::string_view text) {
  if (text.empty()) return Bad(text, "empty");
  Address a;
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "unix://") || absl::ConsumePrefix(&rest, "unix:")) {
    if (rest.empty()) return Bad(text, "no socket path");
    a.path = std::string(rest);
    return a;
  }
  if (absl::ConsumePrefix(&rest, "tcp://")) return ParseHostPort(text, rest);
  if (const size_t scheme = text.find("://"); scheme != absl::string_view::npos) {
    return Bad(text, absl::StrCat(text.substr(0, scheme),
                                  ":// is not a scheme nftproxy speaks (it serves gRPC over a unix socket or TCP)"));
  }
  if (text.find('/') != absl::string_view::npos) {
    a.path = std::string(text);
    return a;
  }
  return ParseHostPort(text, text);
}

std::string Address::GrpcTarget() const {
  if (kind == Kind::kUnix) return absl::StrCat("unix:", path);
  return JoinHostPort(host, port);
}

std::string JoinHostPort(absl::string_view host, uint32_t port) {
  if (host.find(':') != absl::string_view::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::string Address::ToString() const {
  if (kind == Kind::kUnix) return absl::StrCat("unix://", path);
  return absl::StrCat("tcp://", GrpcTarget());
}

bool Address::IsLoopback() const {
  if (kind != Kind::kTcp) return false;
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

}  // namespace nftproxy
