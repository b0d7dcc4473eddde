// IP addresses as plain values, independent of any socket API.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace nftproxy::dp {

enum class Family : uint8_t { kV4 = 4, kV6 = 6 };

struct IpAddr {
  Family family = Family::kV4;
  // Network byte order; only the first 4 bytes are used for IPv4.
  std::array<uint8_t, 16> bytes{};

  static absl::StatusOr<IpAddr> Parse(absl::string_view text);
  std::string ToString() const;
  // 4 or 16.
  size_t size() const { return family == Family::kV4 ? 4 : 16; }

  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    return a.family == b.family && a.bytes == b.bytes;
  }
  friend bool operator!=(const IpAddr& a, const IpAddr& b) { return !(a == b); }
  friend bool operator<(const IpAddr& a, const IpAddr& b) {
    if (a.family != b.family) return a.family < b.family;
    return a.bytes < b.bytes;
  }
};

// An address with a prefix length, e.g. 198.18.0.0/15.
struct Cidr {
  IpAddr addr;
  int prefix_len = 0;

  static absl::StatusOr<Cidr> Parse(absl::string_view text);
  std::string ToString() const;
  // The same prefix with the host bits cleared (198.18.0.7/24 -> 198.18.0.0/24).
  Cidr Network() const;
  // The last address inside the prefix.
  IpAddr Last() const;

  friend bool operator==(const Cidr& a, const Cidr& b) {
    return a.addr == b.addr && a.prefix_len == b.prefix_len;
  }
  friend bool operator<(const Cidr& a, const Cidr& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.prefix_len < b.prefix_len;
  }
};

}  // namespace nftproxy::dp
