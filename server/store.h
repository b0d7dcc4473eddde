// The server's desired state: every resource as the API last accepted it.
// A State is a plain value; a write works on a copy and replaces the original
// only after the kernel committed, which makes every write all-or-nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <tuple>
#include <vector>

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

// The Watch events that turn `before` into `after`, looking only at `keys`
// (in that order): UPSERT for a created or replaced resource (one whose
// resource version changed), DELETE (with the old resource) for a removed
// one. Every event carries `after.revision`.
std::vector<v1::WatchEvent> DiffStates(const State& before, const State& after,
                                       const std::vector<Key>& keys);

// A bounded, in-memory log of committed changes, for Watch. Not thread-safe;
// the owner locks.
class ChangeLog {
 public:
  static constexpr size_t kDefaultCapacity = 10000;
  explicit ChangeLog(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // Forgets everything: the log is complete from `revision` on (start-up,
  // restore).
  void Reset(uint64_t revision);
  // Appends the events of one commit (revisions must not decrease). Drops
  // the oldest events beyond the capacity, never those of the newest commit.
  void Append(std::vector<v1::WatchEvent> events);
  // Appends to `out` the events with a revision greater than `since`, in
  // order. OutOfRange when some of them were already dropped.
  absl::Status Since(uint64_t since, std::vector<v1::WatchEvent>* out) const;
  // The oldest revision one can resume from.
  uint64_t compacted() const { return compacted_; }
  size_t size() const { return events_.size(); }

 private:
  size_t capacity_;
  // Every event with a revision > compacted_ is in events_.
  uint64_t compacted_ = 0;
  std::deque<v1::WatchEvent> events_;
};

// Saves/loads the state to a file atomically (write, fsync, rename).
absl::Status SaveState(const State& state, const std::string& path);
// NotFound when the file does not exist.
absl::StatusOr<State> LoadState(const std::string& path);

}  // namespace nftproxy::server
