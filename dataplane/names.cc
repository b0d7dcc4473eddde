#include "dataplane/names.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "dataplane/dataplane.h"

namespace nftproxy::dp {

const char* FamilyDigit(Family f) { return f == Family::kV4 ? "4" : "6"; }

const std::string& SetName(SetId id, Family f) {
  static const std::string* const kNames = [] {
    static const char* const kBases[kSetIds] = {"service-ips", "nodeports",      "cluster-ips", "cluster-cidrs",
                                                "nodeport-addrs", "hairpin", "affinity"};
    auto* names = new std::string[kSetIds * 2];
    for (int i = 0; i < kSetIds; ++i) {
      names[2 * i] = absl::StrCat(kBases[i], "4");
      names[2 * i + 1] = absl::StrCat(kBases[i], "6");
    }
    return names;
  }();
  return kNames[2 * static_cast<int>(id) + (f == Family::kV4 ? 0 : 1)];
}

namespace {
constexpr char kServiceOwnerPrefix[] = "service ";

// `s` without `prefix`; "" when `s` does not start with it.
std::string AfterPrefix(absl::string_view prefix, const std::string& s) {
  return absl::StartsWith(s, prefix) ? s.substr(prefix.size()) : "";
}
}  // namespace

std::string ServiceOwner(const std::string& service_key) { return absl::StrCat(kServiceOwnerPrefix, service_key); }

std::string ServiceKeyOfOwner(const std::string& owner) { return AfterPrefix(kServiceOwnerPrefix, owner); }

std::string PickChainName(Family f, uint32_t shard) { return absl::StrCat("pick", FamilyDigit(f), "-", shard); }

std::string BackendsMapName(Family f, uint32_t shard) {
  return absl::StrCat("backends", FamilyDigit(f), "-", shard);
}

std::string EpConnsMapName(Family f, uint32_t shard) { return absl::StrCat("epconns", FamilyDigit(f), "-", shard); }

namespace {
constexpr const char* kChainPrefixes[] = {"svc", "local", "ext", "fw"};
}  // namespace

std::string ServiceChainName(ChainKind kind, Family f, const std::string& port_key) {
  return absl::StrCat(kChainPrefixes[static_cast<int>(kind)], FamilyDigit(f), "/", port_key);
}

bool ParseServiceChainName(const std::string& name, ChainKind* kind, Family* f, std::string* port_key) {
  const size_t slash = name.find('/');
  if (slash == std::string::npos || slash < 2) return false;
  const char digit = name[slash - 1];
  if (digit != '4' && digit != '6') return false;
  const absl::string_view prefix(name.data(), slash - 1);
  for (int k = 0; k < 4; ++k) {
    if (prefix != kChainPrefixes[k]) continue;
    *kind = static_cast<ChainKind>(k);
    *f = digit == '4' ? Family::kV4 : Family::kV6;
    *port_key = name.substr(slash + 1);
    return !port_key->empty();
  }
  return false;
}

namespace {
constexpr char kConnCounterPrefix[] = "conns/";
}  // namespace

std::string ConnCounterName(const std::string& port_key) { return absl::StrCat(kConnCounterPrefix, port_key); }

std::string PortKeyOfConnCounter(const std::string& name) { return AfterPrefix(kConnCounterPrefix, name); }

namespace {
constexpr char kEndpointCounterPrefix[] = "epconns/";
}  // namespace

std::string EndpointCounterName(const std::string& port_key, const IpAddr& addr, uint16_t port) {
  std::string a = addr.ToString();
  std::replace(a.begin(), a.end(), ':', '-');
  return absl::StrCat(kEndpointCounterPrefix, port_key, "/", a, "/", port);
}

bool ServiceOfCounterName(absl::string_view name, absl::string_view* ns, absl::string_view* service) {
  for (absl::string_view prefix : {absl::string_view(kConnCounterPrefix), absl::string_view(kEndpointCounterPrefix)}) {
    if (!absl::ConsumePrefix(&name, prefix)) continue;
    const size_t a = name.find('/');
    if (a == absl::string_view::npos || a == 0) return false;
    const size_t b = name.find('/', a + 1);
    if (b == absl::string_view::npos || b == a + 1) return false;
    *ns = name.substr(0, a);
    *service = name.substr(a + 1, b - a - 1);
    return true;
  }
  return false;
}

bool ParseEndpointCounterName(const std::string& name, std::string* port_key, IpAddr* addr, uint16_t* port) {
  const std::string rest = AfterPrefix(kEndpointCounterPrefix, name);
  const size_t p = rest.rfind('/');
  if (p == std::string::npos || p == 0) return false;
  const size_t a = rest.rfind('/', p - 1);
  if (a == std::string::npos || a == 0) return false;
  uint32_t n = 0;
  if (!absl::SimpleAtoi(absl::string_view(rest).substr(p + 1), &n) || n == 0 || n > 65535) return false;
  std::string text = rest.substr(a + 1, p - a - 1);
  std::replace(text.begin(), text.end(), '-', ':');
  absl::StatusOr<IpAddr> ip = IpAddr::Parse(text);
  if (!ip.ok()) return false;
  *port_key = rest.substr(0, a);
  *addr = *ip;
  *port = static_cast<uint16_t>(n);
  return true;
}

absl::Status BlameService(absl::Status s, const std::string& owner) {
  if (const std::string key = ServiceKeyOfOwner(owner); !key.empty() && !s.ok()) {
    s.SetPayload(kServiceErrorPayload, absl::Cord(key));
  }
  return s;
}

std::optional<std::string> ServiceOfError(const absl::Status& s) {
  absl::optional<absl::Cord> key = s.GetPayload(kServiceErrorPayload);
  if (!key) return std::nullopt;
  return std::string(*key);
}

}  // namespace nftproxy::dp
