#include "dataplane/nft_elements.h"

#include <linux/netfilter/nf_tables.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/nft_batch.h"

namespace nftproxy::dp {

std::string Describe(const Tag& t, const TicketOwner* owner) {
  switch (t.kind) {
    case Tag::Kind::kFrontend:
      return absl::StrCat(*t.owner, " (", t.addr.ToString(), " ", L4ProtoName(t.proto), "/", t.port, ")");
    case Tag::Kind::kNodePort:
      return absl::StrCat(*t.owner, " (nodePort ", L4ProtoName(t.proto), "/", t.port, ")");
    case Tag::Kind::kAddr:
      return t.addr.ToString();
    case Tag::Kind::kCidr:
      return Cidr{t.addr, t.prefix}.ToString();
    case Tag::Kind::kInterval:
      return absl::StrFormat("%sticket 0x%08x (endpoint %s:%d)", owner ? (*owner)(t.ticket) + " " : "", t.ticket,
                             t.addr.ToString(), t.port);
  }
  return "";
}

ElemList& ElemChanges::Set(const std::string& name) {
  if (last_ == nullptr || *last_name_ != name) {
    auto it = sets_.try_emplace(name).first;
    last_name_ = &it->first;
    last_ = &it->second;
  }
  return *last_;
}

void ElemChanges::Emit(Batch& batch, uint16_t type) {
  for (auto& [set, list] : sets_) batch.Elements(type, set, std::move(list));
  sets_.clear();
  last_ = nullptr;
  last_name_ = nullptr;
}

namespace {

void Add(ElemList& list, const Elem& e, const Tag& tag) {
  list.elems.push_back(e);
  list.tags.push_back(tag);
}

// The address after `a`, or false when `a` is the last one.
bool Next(IpAddr* a) {
  for (int i = static_cast<int>(a->size()) - 1; i >= 0; --i) {
    if (++a->bytes[i] != 0) return true;
  }
  return false;
}

// Appends bytes to a fixed-size element buffer.
template <size_t N>
void Put(std::array<uint8_t, N>* buf, uint8_t* len, const uint8_t* p, size_t n) {
  memcpy(buf->data() + *len, p, n);
  *len = static_cast<uint8_t>(*len + n);
}
void PutAddr(Elem* e, const IpAddr& a) { Put(&e->key, &e->key_len, a.bytes.data(), a.size()); }
void PutProtoPort(Elem* e, L4Proto proto, uint16_t port) {
  const uint8_t pp[8] = {static_cast<uint8_t>(proto), 0, 0, 0, static_cast<uint8_t>(port >> 8),
                         static_cast<uint8_t>(port), 0, 0};
  Put(&e->key, &e->key_len, pp, sizeof(pp));
}
void PutBe32(Elem* e, uint32_t v) {
  const uint8_t b[4] = {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
                        static_cast<uint8_t>(v)};
  Put(&e->key, &e->key_len, b, sizeof(b));
}

// An element of a verdict map (service-ips, nodeports): `key` goes to t.chain.
void GotoElem(ElemChanges* c, const std::string& set, Elem e, Tag tag, const VmapTarget& t) {
  e.chain = &t.chain;
  tag.owner = &t.owner;
  Add(c->Set(set), e, tag);
}

void VmapElem(ElemChanges* c, const VmapKey& k, const VmapTarget& t) {
  Elem e;
  PutAddr(&e, k.addr);
  PutProtoPort(&e, k.proto, k.port);
  Tag tag;
  tag.kind = Tag::Kind::kFrontend;
  tag.addr = k.addr;
  tag.proto = k.proto;
  tag.port = k.port;
  GotoElem(c, SetName(SetId::kServiceIps, k.addr.family), e, tag, t);
}

void NodePortElem(ElemChanges* c, const NodePortKey& k, const VmapTarget& t) {
  Elem e;
  PutProtoPort(&e, k.proto, k.port);
  Tag tag;
  tag.kind = Tag::Kind::kNodePort;
  tag.proto = k.proto;
  tag.port = k.port;
  GotoElem(c, SetName(SetId::kNodePorts, k.family), e, tag, t);
}

// An address (or, for `pair`, the address twice: hairpin's a . a).
void AddrElem(ElemChanges* c, SetId set, const IpAddr& a, bool pair) {
  Elem e;
  PutAddr(&e, a);
  if (pair) PutAddr(&e, a);
  Tag tag;
  tag.addr = a;
  Add(c->Set(SetName(set, a.family)), e, tag);
}

// An interval's start element (completed by `data`) and end element.
template <typename Data>
void IntervalElemPair(ElemList& list, uint32_t first, const Interval& iv, Data data) {
  Tag tag;
  tag.kind = Tag::Kind::kInterval;
  tag.ticket = first;
  tag.addr = iv.addr;
  tag.port = iv.port;
  Elem start;
  PutBe32(&start, first);
  data(&start);
  Add(list, start, tag);
  Elem end;
  PutBe32(&end, iv.last + 1);
  end.interval_end = true;
  Add(list, end, tag);
}

// The interval's elements in the shard's backends map, and in its epconns
// map when the interval names an endpoint counter.
void IntervalElems(ElemChanges* c, int fam, uint32_t first, const Interval& iv, bool with_data) {
  const uint32_t shard = ShardOfTicket(first);
  // Set names, built once per shard rather than per element.
  static thread_local std::vector<std::string> names[2], counter_names[2];
  const Family f = fam == 0 ? Family::kV4 : Family::kV6;
  while (names[fam].size() <= shard) names[fam].push_back(BackendsMapName(f, names[fam].size()));
  if (!iv.counter.empty()) {
    while (counter_names[fam].size() <= shard) {
      counter_names[fam].push_back(EpConnsMapName(f, counter_names[fam].size()));
    }
    IntervalElemPair(c->Set(counter_names[fam][shard]), first, iv, [&](Elem* start) {
      if (with_data) start->objref = &iv.counter;
    });
  }
  IntervalElemPair(c->Set(names[fam][shard]), first, iv, [&](Elem* start) {
    if (!with_data) return;
    Put(&start->data, &start->data_len, iv.addr.bytes.data(), iv.addr.size());
    const uint8_t port[4] = {static_cast<uint8_t>(iv.port >> 8), static_cast<uint8_t>(iv.port), 0, 0};
    Put(&start->data, &start->data_len, port, sizeof(port));
  });
}

}  // namespace

void CollectCidrs(SetId set, const std::vector<Cidr>& cidrs, ElemChanges* c) {
  for (const Cidr& cidr : cidrs) {
    ElemList& list = c->Set(SetName(set, cidr.addr.family));
    Tag tag;
    tag.kind = Tag::Kind::kCidr;
    tag.addr = cidr.addr;
    tag.prefix = cidr.prefix_len;
    Elem start;
    PutAddr(&start, cidr.addr);
    Add(list, start, tag);
    IpAddr last = cidr.Last();
    if (Next(&last)) {
      Elem end;
      PutAddr(&end, last);
      end.interval_end = true;
      Add(list, end, tag);
    }
  }
}

void CollectBackends(const Ruleset& rs, bool with_data, uint32_t from, uint32_t to, ElemChanges* c) {
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : rs.backends[fam]) {
      const uint32_t shard = ShardOfTicket(first);
      if (shard >= from && shard < to) IntervalElems(c, fam, first, iv, with_data);
    }
  }
}

void CollectFrontends(const Ruleset& rs, ElemChanges* c) {
  for (const auto& [k, t] : rs.vmap) VmapElem(c, k, t);
  for (const auto& [k, t] : rs.nodeports) NodePortElem(c, k, t);
  for (const auto& [a, refs] : rs.cluster_ips) AddrElem(c, SetId::kClusterIps, a, false);
  for (const auto& [a, refs] : rs.hairpin) AddrElem(c, SetId::kHairpin, a, true);
}

void CollectElements(const Ruleset& rs, bool with_data, ElemChanges* c) {
  CollectFrontends(rs, c);
  CollectBackends(rs, with_data, 0, UINT32_MAX, c);
}

}  // namespace nftproxy::dp
