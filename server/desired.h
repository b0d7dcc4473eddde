// The desired state plus the indexes a write needs to find what it affects
// without scanning everything: which slices name a service, which services
// select workloads in a namespace, and who serves each frontend address and
// port. A write changes it in place through Put, keeping the old values, and
// puts them back if the kernel refuses the change.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "server/state_store.h"

namespace nftproxy::server {

// One frontend a service claims ("198.19.0.10 port 80/TCP", "node port
// 30080/TCP"; a health check node port claims its number for every
// protocol), with the field that claims it for error messages.
struct Slot {
  std::string name;
  const char* list;  // "spec.clusterIps", "spec.ports" (with ".nodePort" after the index)
  int index;         // -1: the field is `list` itself (spec.healthCheckNodePort)
  // "spec.clusterIps[0]", "spec.ports[1].nodePort"; built only for errors.
  std::string Field() const;
};
std::vector<Slot> SlotsOf(const v1::Service& svc);

// What the user said in `r`: its deterministic serialization without the
// fields the server assigns or defaults (metadata namespace, source,
// resourceVersion, createTime, updateTime). An upsert whose user bytes equal
// the stored resource's changes nothing. `r` is modified while the bytes are
// taken and restored before returning.
std::string UserBytes(v1::Resource* r);

// How a stored resource was last sent: the bytes of a request's resource
// that stored it, or that were found to say the same, with the
// metadata.source and resourceVersion in them. A request resource with
// exactly these bytes needs no parsing to be known unchanged.
struct Wire {
  std::string bytes;  // empty: not known
  std::string source;
  uint64_t version = 0;
};

class Desired {
 public:
  Desired() = default;
  explicit Desired(State state);
  // Movable (the map's nodes, which the index points to, move along), not
  // copyable.
  Desired(Desired&&) = default;
  Desired& operator=(Desired&&) = default;
  Desired(const Desired&) = delete;
  Desired& operator=(const Desired&) = delete;

  const State& state() const { return state_; }
  uint64_t revision() const { return state_.revision; }
  void set_revision(uint64_t r) { state_.revision = r; }
  const v1::Resource* Find(const Key& key) const;
  // For changes that leave the indexed fields alone (kind, namespace, name,
  // spec and serviceName are not touched through it).
  v1::Resource* FindMutable(const Key& key);

  // Room for `more` resources than are stored now (a large write).
  void Reserve(size_t more);

  // How many stored resources `source` owns.
  size_t CountOwnedBy(const std::string& source) const;

  // UserBytes of the resource stored under `key`; null when there is none.
  const std::string* UserBytesOf(const Key& key) const;

  // The stored resource last sent as exactly `bytes`: its key, itself and
  // its Wire; null when there is none.
  struct WireMatch {
    const Key* key;
    const v1::Resource* resource;
    const Wire* wire;
  };
  std::optional<WireMatch> MatchWire(absl::string_view bytes) const;
  // Records that the resource stored under `key` was sent as `wire` (a
  // request that left it unchanged).
  void SetWire(const Key& key, Wire wire);

  // Stores `r` under `key` (nullopt: removes it) and returns what was there.
  // `user_bytes` are UserBytes(*r) when the caller has them (empty: computed);
  // `wire` is how `r` was sent, when it came from a request's bytes.
  std::optional<v1::Resource> Put(const Key& key, std::optional<v1::Resource> r, std::string user_bytes = {},
                                  Wire wire = {});

  // Names of the EndpointSlices whose serviceName is ns/service.
  const std::set<std::string>& SlicesOf(const std::string& ns, const std::string& service) const;
  // Names of the services in `ns` that have a selector.
  const std::set<std::string>& SelectorServices(const std::string& ns) const;
  // "ns/name" of every service that claims the slot.
  const std::set<std::string>& SlotOwners(const std::string& slot) const;

 private:
  void Index(const Key& key, const v1::Resource& r, bool add);

  struct Entry {
    // The key and resource in state_.objects (std::map nodes do not move).
    const Key* key;
    v1::Resource* resource;
    std::string user_bytes;
    Wire wire;
  };
  void ReplaceWire(Entry* e, Wire wire);

  State state_;
  // state_.objects again, hashed: lookups are most of what a large no-op
  // sync does.
  absl::flat_hash_map<Key, Entry> index_;
  absl::flat_hash_map<std::string, size_t> owned_;  // source -> resources
  // Hash of Entry::wire.bytes -> the entry's key. A hash shared by two
  // entries keeps one of them: the other is parsed when sent again.
  absl::flat_hash_map<size_t, const Key*> by_wire_;
  std::map<std::pair<std::string, std::string>, std::set<std::string>> slices_;
  std::map<std::string, std::set<std::string>> selector_services_;
  std::map<std::string, std::set<std::string>> slot_owners_;
};

// A write in progress: every Put goes through it, so that Rollback can
// restore the state exactly, and the keys it touched in order.
class Txn {
 public:
  explicit Txn(Desired* d) : d_(d), revision_(d->revision()) {}
  Desired& desired() { return *d_; }
  const Desired& desired() const { return *d_; }

  // Records that the write names `key`; false when it already did (a key
  // appears at most once per write).
  bool Claim(const Key& key) { return touched_.insert(key).second; }
  void Reserve(size_t keys) {
    touched_.reserve(keys);
    d_->Reserve(keys);
  }
  // Desired::Put on a claimed key (at most once per key), remembering the
  // old value. (A rollback restores the old resource without its Wire.)
  void Put(const Key& key, std::optional<v1::Resource> r, std::string user_bytes = {}, Wire wire = {});
  // Keys changed, in the order they were first changed, with their old values.
  const std::vector<std::pair<Key, std::optional<v1::Resource>>>& undo() const { return undo_; }
  std::vector<Key> Keys() const;
  void Rollback();

 private:
  Desired* d_;
  uint64_t revision_;
  absl::flat_hash_set<Key> touched_;
  std::vector<std::pair<Key, std::optional<v1::Resource>>> undo_;
};

// Watch events for a committed Txn: UPSERT for each key now stored whose
// resource version changed, DELETE (with the old resource) for each removed.
std::vector<v1::WatchEvent> ChangeEvents(const Txn& txn);

}  // namespace nftproxy::server
