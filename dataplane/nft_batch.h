// One nf_tables batch under construction, remembering what each message is
// about so that a kernel error (reported by sequence number, and for set
// elements by the extended ACK's attribute offset) names its object.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/ir.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/nft_elements.h"

struct nftnl_batch;
struct nlmsghdr;

namespace nftproxy::dp {

// A batch can be sent in parts (see NftWriter::CommitFull): a first part
// that starts with BEGIN, fragments built meanwhile on other threads with
// sequence numbers of their own (Renumber makes them follow the first
// part's), and a last part that holds END.
class Batch {
 public:
  enum class Kind { kFirst, kFragment };
  Batch(const std::string& table, uint32_t* seq, Kind kind = Kind::kFirst);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Gives the messages consecutive sequence numbers from *seq on.
  void Renumber(uint32_t* seq);

  // `marked`: with nftproxy's comment (kTableComment).
  void Table(uint16_t type, uint16_t flags, bool marked = false);
  void Set(const SetDef& set);
  // A base chain when `def` has a hook; `owner` ("service ns/name") for errors.
  void NewChain(const std::string& name, const std::string& owner, const ChainDef* def = nullptr);
  void DelChain(const std::string& name, const std::string& owner);
  // Deletes every rule of the chain.
  void FlushChain(const std::string& name, const std::string& owner);
  // Creates (NFT_MSG_NEWOBJ, exclusive) or deletes (NFT_MSG_DELOBJ) a named
  // counter object.
  void Counter(uint16_t type, const std::string& name, const std::string& owner);
  // Appends a rule to the chain.
  void Rule(const std::string& chain, const std::string& owner, const RuleStmts& rule);
  // Adds (NEWSETELEM, exclusive) or removes (DELSETELEM) elements of one
  // set, split over messages that each stay well under the page overrun.
  // The batch keeps the list, to name the elements of a refused message.
  void Elements(uint16_t type, const std::string& set, ElemList list);
  // Ends the batch (END takes the next number of *seq).
  void End(uint32_t* seq);

  nftnl_batch* raw() { return b_; }
  uint32_t messages() const { return messages_; }
  bool Holds(uint32_t seq) const { return seq >= first_seq_ && seq - first_seq_ < whats_.size(); }
  // What the message with this sequence number was about; `bad_attr` is
  // the offset of the attribute the kernel blamed (extended ACK), or 0.
  // Tickets are named with their owner.
  Blame What(uint32_t seq, uint32_t bad_attr, const TicketOwner& owner);

 private:
  // `owner_len`: the first characters of `what` that are its owner.
  nlmsghdr* Header(uint16_t type, uint16_t flags, std::string what, int list = -1, uint32_t from = 0,
                   uint32_t to = 0, uint32_t owner_len = 0);
  nlmsghdr* ChainHeader(uint16_t type, uint16_t flags, const std::string& chain, const std::string& owner);
  void Done();
  // The message with this sequence number, as it is in the batch.
  const nlmsghdr* Find(uint32_t seq);
  template <typename F>
  void ForEachMessage(F fn);

  std::string table_;
  uint32_t own_seq_ = 1;
  uint32_t* seq_;
  nftnl_batch* b_;
  uint32_t first_seq_ = 0;
  uint32_t messages_ = 0;
  uint32_t set_id_ = 0;
  // What each message is about: a text (its first owner_len characters
  // name the owner, a service), and for element messages the range of their
  // tags in lists_[list].
  struct About {
    std::string text;
    int list = -1;
    uint32_t from = 0, to = 0;
    uint32_t owner_len = 0;
  };
  std::vector<About> whats_;
  std::vector<ElemList> lists_;
};

}  // namespace nftproxy::dp
