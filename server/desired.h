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

#include "server/store.h"

namespace nftproxy::server {

// One frontend a service claims ("198.19.0.10 port 80/TCP", "node port
// 30080/TCP"), with the field that claims it for error messages.
struct Slot {
  std::string name;
  std::string field;  // "spec.clusterIps[0]", "spec.ports[1].nodePort"
};
std::vector<Slot> SlotsOf(const v1::Service& svc);

class Desired {
 public:
  Desired() = default;
  explicit Desired(State state);

  const State& state() const { return state_; }
  uint64_t revision() const { return state_.revision; }
  void set_revision(uint64_t r) { state_.revision = r; }
  const v1::Resource* Find(const Key& key) const;
  // For changes that leave the indexed fields alone (kind, namespace, name,
  // spec and serviceName are not touched through it).
  v1::Resource* FindMutable(const Key& key);

  // Stores `r` under `key` (nullopt: removes it) and returns what was there.
  std::optional<v1::Resource> Put(const Key& key, std::optional<v1::Resource> r);

  // Names of the EndpointSlices whose serviceName is ns/service.
  const std::set<std::string>& SlicesOf(const std::string& ns, const std::string& service) const;
  // Names of the services in `ns` that have a selector.
  const std::set<std::string>& SelectorServices(const std::string& ns) const;
  // "ns/name" of every service that claims the slot.
  const std::set<std::string>& SlotOwners(const std::string& slot) const;

 private:
  void Index(const Key& key, const v1::Resource& r, bool add);

  State state_;
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

  // Put, remembering the old value the first time a key is touched.
  void Put(const Key& key, std::optional<v1::Resource> r);
  // Marks a key the write names but leaves as it is.
  void Touch(const Key& key) { touched_.insert(key); }
  bool Touched(const Key& key) const { return touched_.count(key) > 0; }
  // Keys changed, in the order they were first changed, with their old values.
  const std::vector<std::pair<Key, std::optional<v1::Resource>>>& undo() const { return undo_; }
  std::vector<Key> Keys() const;
  void Rollback();

 private:
  Desired* d_;
  uint64_t revision_;
  std::set<Key> touched_;
  std::vector<std::pair<Key, std::optional<v1::Resource>>> undo_;
};

// Watch events for a committed Txn: UPSERT for each key now stored whose
// resource version changed, DELETE (with the old resource) for each removed.
std::vector<v1::WatchEvent> ChangeEvents(const Txn& txn);

}  // namespace nftproxy::server
