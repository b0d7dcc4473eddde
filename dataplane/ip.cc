#include "dataplane/ip.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nftproxy::dp {

absl::StatusOr<IpAddr> IpAddr::Parse(absl::string_view text) {
  std::string s(text);
  IpAddr a;
  if (s.find(':') == std::string::npos) {
    a.family = Family::kV4;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  } else {
    a.family = Family::kV6;
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP address"));
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == Family::kV4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(absl::string_view text) {
  size_t slash = text.find('/');
  auto addr = IpAddr::Parse(text.substr(0, slash));
  if (!addr.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a CIDR"));
  }
  Cidr c{*addr, addr->family == Family::kV4 ? 32 : 128};
  if (slash != absl::string_view::npos) {
    int len = -1;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &len) || len < 0 ||
        len > static_cast<int>(addr->size() * 8)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" has an invalid prefix length"));
    }
    c.prefix_len = len;
  }
  return c;
}

std::string Cidr::ToString() const { return absl::StrCat(addr.ToString(), "/", prefix_len); }

Cidr Cidr::Network() const {
  Cidr c = *this;
  for (size_t i = 0; i < addr.size(); ++i) {
    const int bits = std::clamp(prefix_len - static_cast<int>(i) * 8, 0, 8);
    c.addr.bytes[i] &= static_cast<uint8_t>(0xff00 >> bits);
  }
  return c;
}

IpAddr Cidr::Last() const {
  IpAddr a = Network().addr;
  for (size_t i = 0; i < a.size(); ++i) {
    const int bits = std::clamp(prefix_len - static_cast<int>(i) * 8, 0, 8);
    a.bytes[i] |= static_cast<uint8_t>(0xff >> bits);
  }
  return a;
}

}  // namespace nftproxy::dp
