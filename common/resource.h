// The API's resources as both client and server see them: identity (kind,
// namespace, name), the one table of kinds that every switch over the
// Resource oneof goes through, and the meaning of fields both sides read
// (endpoint readiness, selector matching, defaults).
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <tuple>

#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy {

// ---- defaults ---------------------------------------------------------------

inline constexpr char kDefaultNamespace[] = "default";
// Where `serve` listens and the CLI connects when told nothing else.
inline constexpr char kDefaultSocketPath[] = "/run/nftproxy/nftproxy.sock";
inline constexpr char kDefaultServer[] = "unix:///run/nftproxy/nftproxy.sock";
// ClientIP session affinity without a timeout keeps a client for 3 hours
// (Kubernetes' default).
inline constexpr int64_t kDefaultAffinityTimeoutSeconds = 10800;

// ---- kinds ------------------------------------------------------------------

// One row per kind of resource. Adding a kind to the API is one row here.
struct KindInfo {
  v1::Kind kind;
  v1::Resource::KindCase oneof;
  const char* word;      // "service": in messages and `get` output
  const char* manifest;  // "Service": a manifest's `kind`
  const char* plural;    // "services"
  const char* short_name;  // "svc"
  const v1::ObjectMeta& (*meta)(const v1::Resource&);
  v1::ObjectMeta* (*mutable_meta)(v1::Resource*);
};

// Every kind, in enum order.
const std::vector<KindInfo>& Kinds();
// The row of `kind` / of the kind `r` holds; null for none (unspecified, unset).
const KindInfo* FindKind(v1::Kind kind);
const KindInfo* FindKind(const v1::Resource& r);
// The kind a word names: its word, plural, short name or manifest kind
// ("svc", "services", "Service", "endpoints"), case-sensitive; null if none.
const KindInfo* KindByWord(absl::string_view word);

// "service", "endpointslice", "workload"; "resource" for none.
const char* KindName(v1::Kind kind);
v1::Kind KindOf(const v1::Resource& r);
// The metadata of whatever `r` holds (an empty default for an empty one;
// null from MutableMetaOf).
const v1::ObjectMeta& MetaOf(const v1::Resource& r);
v1::ObjectMeta* MutableMetaOf(v1::Resource* r);

// ---- identity ---------------------------------------------------------------

struct Key {
  v1::Kind kind = v1::KIND_UNSPECIFIED;
  std::string ns;
  std::string name;

  friend bool operator<(const Key& a, const Key& b) {
    return std::tie(a.kind, a.ns, a.name) < std::tie(b.kind, b.ns, b.name);
  }
  friend bool operator==(const Key& a, const Key& b) {
    return a.kind == b.kind && a.ns == b.ns && a.name == b.name;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Key& k) {
    return H::combine(std::move(h), k.kind, k.ns, k.name);
  }
};

// "service default/web".
std::string Describe(const Key& key);
// Key of a resource or reference, with the namespace defaulted.
Key KeyOf(const v1::Resource& r);
Key KeyOf(const v1::ResourceRef& ref);
v1::ResourceRef RefOf(const Key& key, uint64_t resource_version = 0);
// The smallest resource that names `key`: its kind with metadata namespace
// and name set, nothing else. Empty when the kind is unspecified.
v1::Resource ResourceOf(const Key& key);

// The message's bytes with map entries in a fixed order, so that equal
// messages give equal bytes (labels and selectors are maps).
std::string DeterministicBytes(const google::protobuf::MessageLite& m);

// ---- meaning of fields ------------------------------------------------------

// An endpoint without a `ready` condition is ready.
bool EndpointReady(const v1::EndpointConditions& c);
// Every key of `selector` is in `labels` with the same value (an empty
// selector matches everything).
bool SelectorMatches(const google::protobuf::Map<std::string, std::string>& selector,
                     const google::protobuf::Map<std::string, std::string>& labels);
// The session affinity timeout of a ClientIP service, defaulted; 0 without
// affinity.
int64_t AffinityTimeoutSeconds(const v1::ServiceSpec& spec);

// Clears the enum fields that say what leaving them out says (type
// CLUSTER_IP, traffic policies CLUSTER, session affinity NONE, load balancing
// RANDOM, port protocol TCP), so that a resource written with its defaults
// spelled out and one without them are the same resource: the server
// compares what was written.
void ClearExplicitDefaults(v1::Resource* r);

}  // namespace nftproxy
