#include "server/desired.h"

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "dataplane/ip.h"

namespace nftproxy::server {

namespace {

template <typename K>
const std::set<std::string>& Lookup(const std::map<K, std::set<std::string>>& m, const K& k) {
  static const std::set<std::string> kNone;
  auto it = m.find(k);
  return it == m.end() ? kNone : it->second;
}

void Mark(std::set<std::string>* s, const std::string& v, bool add) {
  if (add) s->insert(v);
  else s->erase(v);
}

}  // namespace

std::vector<Slot> SlotsOf(const v1::Service& s) {
  std::vector<Slot> out;
  auto proto_name = [](v1::Protocol p) {
    return v1::Protocol_Name(p == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p);
  };
  for (int i = 0; i < s.spec().ports_size(); ++i) {
    const v1::ServicePort& p = s.spec().ports(i);
    if (p.node_port() == 0) continue;
    out.push_back(Slot{absl::StrCat("node port ", p.node_port(), "/", proto_name(p.protocol())), "spec.ports", i});
  }
  // A health check node port takes its number for every protocol, like
  // Kubernetes' node port allocator (its listener is TCP; a node port of
  // another protocol with that number would still be confusing).
  if (const uint32_t hc = s.spec().health_check_node_port(); hc != 0) {
    for (v1::Protocol p : {v1::TCP, v1::UDP, v1::SCTP}) {
      out.push_back(Slot{absl::StrCat("node port ", hc, "/", proto_name(p)), "spec.healthCheckNodePort", -1});
    }
  }
  struct List {
    const char* field;
    const google::protobuf::RepeatedPtrField<std::string>* ips;
  };
  const List lists[] = {{"spec.clusterIps", &s.spec().cluster_ips()},
                        {"spec.externalIps", &s.spec().external_ips()},
                        {"spec.loadBalancerIps", &s.spec().load_balancer_ips()}};
  for (const List& l : lists) {
    for (int i = 0; i < l.ips->size(); ++i) {
      auto ip = dp::IpAddr::Parse((*l.ips)[i]);
      if (!ip.ok()) continue;
      for (const v1::ServicePort& p : s.spec().ports()) {
        out.push_back(Slot{absl::StrCat(ip->ToString(), " port ", p.port(), "/", proto_name(p.protocol())), l.field, i});
      }
    }
  }
  return out;
}

std::string UserBytes(v1::Resource* r) {
  v1::ObjectMeta* m = MutableMetaOf(r);
  if (m == nullptr) return DeterministicBytes(*r);
  // Swapped out and back rather than copied: this runs for every resource
  // of a sync.
  std::string ns, source;
  google::protobuf::Timestamp created, updated;
  const bool had_created = m->has_create_time(), had_updated = m->has_update_time();
  m->mutable_namespace_()->swap(ns);
  m->mutable_source()->swap(source);
  const uint64_t version = m->resource_version();
  m->clear_resource_version();
  if (had_created) m->mutable_create_time()->Swap(&created);
  if (had_updated) m->mutable_update_time()->Swap(&updated);
  m->clear_create_time();
  m->clear_update_time();
  std::string bytes = DeterministicBytes(*r);
  m->mutable_namespace_()->swap(ns);
  m->mutable_source()->swap(source);
  m->set_resource_version(version);
  if (had_created) m->mutable_create_time()->Swap(&created);
  if (had_updated) m->mutable_update_time()->Swap(&updated);
  return bytes;
}

std::string Slot::Field() const {
  if (index < 0) return list;
  const bool node_port = std::string_view(list) == "spec.ports";
  return absl::StrCat(list, "[", index, "]", node_port ? ".nodePort" : "");
}

void Desired::Reserve(size_t more) {
  index_.reserve(index_.size() + more);
  by_wire_.reserve(by_wire_.size() + more);
}

Desired::Desired(State state) : state_(std::move(state)) {
  index_.reserve(state_.objects.size());
  for (auto& [key, r] : state_.objects) {
    Index(key, r, true);
    index_[key] = Entry{&key, &r, UserBytes(&r), Wire{}};
    ++owned_[MetaOf(r).source()];
  }
}

size_t Desired::CountOwnedBy(const std::string& source) const {
  auto it = owned_.find(source);
  return it == owned_.end() ? 0 : it->second;
}

std::optional<Desired::WireMatch> Desired::MatchWire(absl::string_view bytes) const {
  auto at = by_wire_.find(absl::Hash<absl::string_view>{}(bytes));
  if (at == by_wire_.end()) return std::nullopt;
  auto it = index_.find(*at->second);
  if (it == index_.end() || it->second.wire.bytes != bytes) return std::nullopt;
  return WireMatch{it->second.key, it->second.resource, &it->second.wire};
}

void Desired::SetWire(const Key& key, Wire wire) {
  auto it = index_.find(key);
  if (it != index_.end()) ReplaceWire(&it->second, std::move(wire));
}

void Desired::ReplaceWire(Entry* e, Wire wire) {
  if (!e->wire.bytes.empty()) {
    auto at = by_wire_.find(absl::Hash<absl::string_view>{}(e->wire.bytes));
    if (at != by_wire_.end() && at->second == e->key) by_wire_.erase(at);
  }
  e->wire = std::move(wire);
  if (!e->wire.bytes.empty()) by_wire_[absl::Hash<absl::string_view>{}(e->wire.bytes)] = e->key;
}

const std::string* Desired::UserBytesOf(const Key& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &it->second.user_bytes;
}

const v1::Resource* Desired::Find(const Key& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : it->second.resource;
}

v1::Resource* Desired::FindMutable(const Key& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : it->second.resource;
}

std::optional<v1::Resource> Desired::Put(const Key& key, std::optional<v1::Resource> r, std::string user_bytes,
                                         Wire wire) {
  std::optional<v1::Resource> old;
  // One search serves both the lookup and an insert.
  const auto hint = state_.objects.lower_bound(key);
  auto it = hint != state_.objects.end() && hint->first == key ? hint : state_.objects.end();
  if (it != state_.objects.end()) {
    Index(key, it->second, false);
    auto n = owned_.find(MetaOf(it->second).source());
    if (--n->second == 0) owned_.erase(n);
    old = std::move(it->second);
  }
  if (r) {
    if (user_bytes.empty()) user_bytes = UserBytes(&*r);
    ++owned_[MetaOf(*r).source()];
    if (it == state_.objects.end()) {
      it = state_.objects.emplace_hint(hint, key, std::move(*r));
    } else {
      it->second = std::move(*r);
    }
    Index(key, it->second, true);
    Entry& e = index_[key];
    e.key = &it->first;
    e.resource = &it->second;
    e.user_bytes = std::move(user_bytes);
    ReplaceWire(&e, std::move(wire));
  } else if (it != state_.objects.end()) {
    auto e = index_.find(key);
    ReplaceWire(&e->second, Wire{});
    index_.erase(e);
    state_.objects.erase(it);
  }
  return old;
}

void Desired::Index(const Key& key, const v1::Resource& r, bool add) {
  switch (key.kind) {
    case v1::SERVICE: {
      const v1::Service& s = r.service();
      if (!s.spec().selector().empty()) Mark(&selector_services_[key.ns], key.name, add);
      const std::string me = absl::StrCat(key.ns, "/", key.name);
      for (const Slot& slot : SlotsOf(s)) {
        Mark(&slot_owners_[slot.name], me, add);
        if (!add && slot_owners_[slot.name].empty()) slot_owners_.erase(slot.name);
      }
      break;
    }
    case v1::ENDPOINT_SLICE: {
      const std::pair<std::string, std::string> owner{key.ns, r.endpoint_slice().service_name()};
      Mark(&slices_[owner], key.name, add);
      if (!add && slices_[owner].empty()) slices_.erase(owner);
      break;
    }
    default:
      break;
  }
}

const std::set<std::string>& Desired::SlicesOf(const std::string& ns, const std::string& service) const {
  return Lookup(slices_, std::pair<std::string, std::string>{ns, service});
}

const std::set<std::string>& Desired::SelectorServices(const std::string& ns) const {
  return Lookup(selector_services_, ns);
}

const std::set<std::string>& Desired::SlotOwners(const std::string& slot) const {
  return Lookup(slot_owners_, slot);
}

void Txn::Put(const Key& key, std::optional<v1::Resource> r, std::string user_bytes, Wire wire) {
  std::optional<v1::Resource> old = d_->Put(key, std::move(r), std::move(user_bytes), std::move(wire));
  undo_.emplace_back(key, std::move(old));
}

std::vector<Key> Txn::Keys() const {
  std::vector<Key> keys;
  keys.reserve(undo_.size());
  for (const auto& [key, old] : undo_) keys.push_back(key);
  return keys;
}

void Txn::Rollback() {
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) d_->Put(it->first, it->second);
  undo_.clear();
  touched_.clear();
  d_->set_revision(revision_);
}

std::vector<v1::WatchEvent> ChangeEvents(const Txn& txn) {
  std::vector<v1::WatchEvent> events;
  const Desired& d = txn.desired();
  for (const auto& [key, old] : txn.undo()) {
    const v1::Resource* now = d.Find(key);
    if (now == nullptr && !old) continue;
    if (now != nullptr && old && MetaOf(*now).resource_version() == MetaOf(*old).resource_version()) continue;
    v1::WatchEvent e;
    e.set_type(now ? v1::WatchEvent::UPSERT : v1::WatchEvent::DELETE);
    *e.mutable_resource() = now ? *now : *old;
    e.set_revision(d.revision());
    events.push_back(std::move(e));
  }
  return events;
}

}  // namespace nftproxy::server
