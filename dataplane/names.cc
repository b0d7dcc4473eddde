#include "dataplane/names.h"

#include "absl/strings/str_cat.h"

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

std::string PickChainName(Family f, uint32_t shard) { return absl::StrCat("pick", FamilyDigit(f), "-", shard); }

std::string BackendsMapName(Family f, uint32_t shard) {
  return absl::StrCat("backends", FamilyDigit(f), "-", shard);
}

std::string ServiceChainName(ChainKind kind, Family f, const std::string& port_key) {
  static const char* const kPrefixes[] = {"svc", "local", "ext", "fw"};
  return absl::StrCat(kPrefixes[static_cast<int>(kind)], FamilyDigit(f), "/", port_key);
}

}  // namespace nftproxy::dp
