#include "dataplane/names.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
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
}  // namespace

std::string ServiceOwner(const std::string& service_key) { return absl::StrCat(kServiceOwnerPrefix, service_key); }

std::string ServiceKeyOfOwner(const std::string& owner) {
  return absl::StartsWith(owner, kServiceOwnerPrefix) ? owner.substr(sizeof(kServiceOwnerPrefix) - 1) : "";
}

std::string PickChainName(Family f, uint32_t shard) { return absl::StrCat("pick", FamilyDigit(f), "-", shard); }

std::string BackendsMapName(Family f, uint32_t shard) {
  return absl::StrCat("backends", FamilyDigit(f), "-", shard);
}

std::string ServiceChainName(ChainKind kind, Family f, const std::string& port_key) {
  static const char* const kPrefixes[] = {"svc", "local", "ext", "fw"};
  return absl::StrCat(kPrefixes[static_cast<int>(kind)], FamilyDigit(f), "/", port_key);
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
