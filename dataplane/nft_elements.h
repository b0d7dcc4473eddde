// Set and map elements as netlink wants them, each with a tag saying what
// it is about, so that a refused element can be named in the error.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dataplane/ruleset.h"

namespace nftproxy::dp {

class Batch;

// One element on the wire (no heap: a full sync writes hundreds of
// thousands of them).
struct Elem {
  std::array<uint8_t, 32> key;
  std::array<uint8_t, 20> data;
  uint8_t key_len = 0;
  uint8_t data_len = 0;  // 0: none
  bool interval_end = false;
  const std::string* chain = nullptr;  // verdict maps: goto target
  const std::string* objref = nullptr;  // object maps: the object's name
};

// What an element is about, put into words only when the kernel refuses it.
struct Tag {
  enum class Kind : uint8_t { kFrontend, kNodePort, kAddr, kCidr, kInterval } kind = Kind::kAddr;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
  int prefix = 0;
  uint32_t ticket = 0;
  IpAddr addr;
  const std::string* owner = nullptr;  // "service ns/name" (frontends, node ports)
};

// The service ("service ns/name") that holds a ticket.
using TicketOwner = std::function<std::string(uint32_t ticket)>;

// The tag in words; a ticket is preceded by its owner when `owner` is given.
std::string Describe(const Tag& t, const TicketOwner* owner = nullptr);

// The elements of one set, with their tags.
struct ElemList {
  std::vector<Elem> elems;
  std::vector<Tag> tags;
};

// Pending element changes, per set (emitted in set-name order).
class ElemChanges {
 public:
  ElemList& Set(const std::string& name);
  // Adds (NEWSETELEM) or removes (DELSETELEM) them all; leaves this empty.
  void Emit(Batch& batch, uint16_t type);

 private:
  std::map<std::string, ElemList> sets_;
  const std::string* last_name_ = nullptr;
  ElemList* last_ = nullptr;
};

// The elements of the cluster-cidrs / nodeport-addrs set for `cidrs`.
void CollectCidrs(SetId set, const std::vector<Cidr>& cidrs, ElemChanges* c);
// The elements of the backends maps of shards [from, to) (with their
// endpoints when `with_data`; a delete names the key only).
void CollectBackends(const Ruleset& rs, bool with_data, uint32_t from, uint32_t to, ElemChanges* c);
// The elements of every set but the backends maps.
void CollectFrontends(const Ruleset& rs, ElemChanges* c);
// Every element of `rs`.
void CollectElements(const Ruleset& rs, bool with_data, ElemChanges* c);

}  // namespace nftproxy::dp
