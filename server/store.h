// The server's desired state: every resource as the API last accepted it.
// A State is a plain value; a write works on a copy and replaces the original
// only after the kernel committed, which makes every write all-or-nothing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

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
};

inline constexpr char kDefaultNamespace[] = "default";

// "service", "endpointslice", "workload".
const char* KindName(v1::Kind kind);
// "service default/web".
std::string Describe(const Key& key);

v1::Kind KindOf(const v1::Resource& r);
const v1::ObjectMeta& MetaOf(const v1::Resource& r);
v1::ObjectMeta* MutableMetaOf(v1::Resource* r);
// Key of a resource, with the namespace defaulted.
Key KeyOf(const v1::Resource& r);
Key KeyOf(const v1::ResourceRef& ref);

struct State {
  std::map<Key, v1::Resource> objects;
  uint64_t revision = 0;
};

// Saves/loads the state to a file atomically (write, fsync, rename).
absl::Status SaveState(const State& state, const std::string& path);
// NotFound when the file does not exist.
absl::StatusOr<State> LoadState(const std::string& path);

}  // namespace nftproxy::server
