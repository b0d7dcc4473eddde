// Every name nftproxy gives an object in its table, in one place: the fixed
// sets, maps and chains, the per-shard backends maps and pick chains, and
// the per-service-port chains with their kinds.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/ip.h"

namespace nftproxy::dp {

// Sets and maps of the fixed table, one per family.
enum class SetId : uint8_t {
  kServiceIps,     // service-ips4/6: VIP . proto . port -> goto chain
  kNodePorts,      // nodeports4/6: proto . nodePort -> goto ext chain
  kClusterIps,     // cluster-ips4/6
  kClusterCidrs,   // cluster-cidrs4/6 (--cluster-cidr)
  kNodePortAddrs,  // nodeport-addrs4/6 (--nodeport-addresses)
  kHairpin,        // hairpin4/6: endpoint . endpoint
  kAffinity,       // affinity4/6: client . VIP . proto . port -> ticket
  kBackends,       // backends4/6-<shard>: ticket range -> endpoint (BackendsMapName)
  kEpConns,        // epconns4/6-<shard>: ticket range -> endpoint counter (EpConnsMapName)
};
// The sets above kBackends: one each per family.
inline constexpr int kSetIds = 7;
// A reference that lives as long as the program (statements point at it);
// not for kBackends.
const std::string& SetName(SetId id, Family f);

// The comment nftproxy gives every table it creates (`nft list` shows it).
// A table without it was made by someone else, and nftproxy never changes,
// replaces or deletes it.
inline constexpr char kTableComment[] = "managed by nftproxy";

// Chains of the fixed table.
inline constexpr char kServicesChain[] = "services";
inline constexpr char kPreroutingChain[] = "prerouting";
inline constexpr char kOutputChain[] = "output";
inline constexpr char kPostroutingChain[] = "postrouting";
inline constexpr char kMasqueradingChain[] = "masquerading";
inline constexpr char kMarkRestoreChain[] = "mark-restore";
inline constexpr char kMarkRestoreOutputChain[] = "mark-restore-output";

// Whose objects these are, in errors: "service ns/name" for the service
// with key "ns/name"; and back ("" for an owner that is not a service's).
std::string ServiceOwner(const std::string& service_key);
std::string ServiceKeyOfOwner(const std::string& owner);

// Per shard of 256 service ports.
std::string PickChainName(Family f, uint32_t shard);
std::string BackendsMapName(Family f, uint32_t shard);
// With endpoint counters: the backends map's intervals to counter objects.
std::string EpConnsMapName(Family f, uint32_t shard);

// Per service port and family: "<kind><4|6>/ns/name/proto/port".
//   kSvc: any endpoint (cluster policy); kLocal: node-local endpoints only;
//   kExt: external frontends (node ports, external and LB IPs), goes to svc
//   or local; kFw: LB source ranges, goes to ext.
enum class ChainKind : uint8_t { kSvc, kLocal, kExt, kFw };
std::string ServiceChainName(ChainKind kind, Family f, const std::string& port_key);
// The reverse: false when `name` is not a per-service chain's.
bool ParseServiceChainName(const std::string& name, ChainKind* kind, Family* f, std::string* port_key);
// The order in which a delta deletes chains: referrers before the chains
// they go to (fw -> ext -> local/svc), so each is unreferenced when it goes.
inline constexpr ChainKind kDeleteOrder[] = {ChainKind::kFw, ChainKind::kExt, ChainKind::kLocal, ChainKind::kSvc};

const char* FamilyDigit(Family f);  // "4" or "6"

// Per service port (both families): the named counter object that counts its
// new connections, "conns/ns/name/proto/port". It lives as long as the
// service port, so incremental commits never reset it.
std::string ConnCounterName(const std::string& port_key);
// The reverse: "" when `name` is not a connection counter's.
std::string PortKeyOfConnCounter(const std::string& name);
// Per endpoint of a service port: "epconns/ns/name/proto/port/ADDR/PORT"
// (an IPv6 address with '-' for ':'). It lives as long as the endpoint is
// in the service port, however its tickets are renumbered.
std::string EndpointCounterName(const std::string& port_key, const IpAddr& addr, uint16_t port);
// The reverse: false when `name` is not an endpoint counter's.
bool ParseEndpointCounterName(const std::string& name, std::string* port_key, IpAddr* addr, uint16_t* port);
// The namespace and service of a counter name of either kind (views into
// `name`); false when it is neither.
bool ServiceOfCounterName(absl::string_view name, absl::string_view* ns, absl::string_view* service);

}  // namespace nftproxy::dp
