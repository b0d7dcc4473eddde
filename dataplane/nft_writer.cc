#include "dataplane/nft_writer.h"

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "common/parallel.h"
#include "dataplane/ir.h"
#include "dataplane/nft_batch.h"
#include "dataplane/nft_elements.h"

namespace nftproxy::dp {
namespace {

void AddRules(Batch& b, const ChainDef& chain) {
  for (const RuleStmts& rule : chain.rules) b.Rule(chain.name, "", rule);
}

// The fixed part of the table, in the order `nft list` prints it
// (creation order): sets, then chains, then their rules.
void AddSkeleton(Batch& b, const NodeSettings& node) {
  const FixedObjects skeleton = Skeleton(node);
  for (const SetDef& set : skeleton.sets) b.Set(set);
  for (const ChainDef& chain : skeleton.chains) b.NewChain(chain.name, "", &chain);
  for (const ChainDef& chain : skeleton.chains) AddRules(b, chain);
}

// A shard's backends maps, then each pick chain with its rules.
void AddShard(Batch& b, uint32_t shard, const NodeSettings& node) {
  const FixedObjects objects = ShardObjects(shard, node);
  for (const SetDef& set : objects.sets) b.Set(set);
  for (const ChainDef& chain : objects.chains) {
    b.NewChain(chain.name, "", &chain);
    AddRules(b, chain);
  }
}

void AddChainRules(Batch& b, const std::string& name, const Chain& chain) {
  RuleStmts stmts;
  for (const Rule& rule : chain.rules) {
    stmts.clear();
    LowerRule(rule, &stmts);
    b.Rule(name, chain.owner, stmts);
  }
}

// The full table: skeleton, every chain, every element; the elements of the
// backends maps of shards [split, ...) go into `rest` instead (built on
// another thread: they are most of a large table's messages).
void BuildFull(Batch& b, const Ruleset& to, uint32_t split) {
  // Create-if-missing then delete, so the delete cannot fail; the new table
  // replaces the old one when the batch commits.
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
  b.Table(NFT_MSG_DELTABLE, 0);
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, /*marked=*/true);
  AddSkeleton(b, to.node);
  for (uint32_t shard = 0; shard < to.shards; ++shard) AddShard(b, shard, to.node);
  for (const auto& [name, owner] : to.counters) b.Counter(NFT_MSG_NEWOBJ, name, owner);
  for (const auto& [name, chain] : to.chains) b.NewChain(name, chain.owner);
  for (const auto& [name, chain] : to.chains) AddChainRules(b, name, chain);
  ElemChanges add;
  CollectCidrs(SetId::kClusterCidrs, to.node.cluster_cidrs, &add);
  CollectCidrs(SetId::kNodePortAddrs, to.node.nodeport_cidrs, &add);
  CollectFrontends(to, &add);
  CollectBackends(to, true, 0, split, &add);
  add.Emit(b, NFT_MSG_NEWSETELEM);
}

void BuildFullRest(Batch& rest, const Ruleset& to, uint32_t split) {
  ElemChanges add;
  CollectBackends(to, true, split, UINT32_MAX, &add);
  add.Emit(rest, NFT_MSG_NEWSETELEM);
}

// The shard from which BuildFullRest takes over: about 60% of the backends
// elements go to it, since the first part also builds everything else.
uint32_t SplitShard(const Ruleset& to) {
  std::vector<size_t> per_shard(to.shards + 1, 0);
  size_t total = 0;
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : to.backends[fam]) {
      ++per_shard[std::min<uint32_t>(ShardOfTicket(first), to.shards)];
      ++total;
    }
  }
  size_t before = 0;
  for (uint32_t shard = 0; shard < per_shard.size(); ++shard) {
    if (before * 10 >= total * 4) return shard;
    before += per_shard[shard];
  }
  return static_cast<uint32_t>(per_shard.size());
}

// A change, in an order the kernel accepts: elements that go away release
// their chains before the chains are deleted, and chains exist before
// elements point at them.
void BuildDelta(Batch& b, uint32_t base_shards, const Ruleset& removed, const Ruleset& added) {
  ElemChanges del, add;
  CollectElements(removed, false, &del);
  CollectElements(added, true, &add);
  del.Emit(b, NFT_MSG_DELSETELEM);
  for (uint32_t shard = base_shards; shard < added.shards; ++shard) AddShard(b, shard, added.node);
  // Counters are never replaced (that would reset them): only new ones are
  // created, before the rules that name them.
  for (const auto& [name, owner] : added.counters) {
    if (!removed.counters.count(name)) b.Counter(NFT_MSG_NEWOBJ, name, owner);
  }
  for (const auto& [name, chain] : added.chains) {
    if (!removed.chains.count(name)) b.NewChain(name, chain.owner);
  }
  for (const auto& [name, chain] : added.chains) {
    if (removed.chains.count(name)) b.FlushChain(name, chain.owner);
    AddChainRules(b, name, chain);
  }
  add.Emit(b, NFT_MSG_NEWSETELEM);
  for (ChainKind kind : kDeleteOrder) {
    for (const auto& [name, chain] : removed.chains) {
      if (chain.kind == kind && !added.chains.count(name)) b.DelChain(name, chain.owner);
    }
  }
  // After the rules that named them.
  for (const auto& [name, owner] : removed.counters) {
    if (!added.counters.count(name)) b.Counter(NFT_MSG_DELOBJ, name, owner);
  }
}

// Sends the parts as one batch; tickets in errors are named by their owner
// in `names`, else in `more_names`.
absl::Status SendParts(NetlinkSocket& socket, const std::vector<Batch*>& parts, bool full, const Ruleset& names,
                       const Ruleset& more_names, absl::Time start, CommitStats* stats,
                       const std::function<void()>& alongside = nullptr) {
  uint32_t messages = 0;
  for (Batch* b : parts) messages += b->messages();
  const absl::Time built = absl::Now();
  if (stats != nullptr) {
    stats->messages = messages;
    stats->full = full;
    stats->build = built - start;
  }
  const TicketOwner owner = [&](uint32_t ticket) {
    std::string o = OwnerOfTicket(names, ticket);
    return o == kUnknownOwner ? OwnerOfTicket(more_names, ticket) : o;
  };
  auto what = [&](uint32_t seq, uint32_t bad_attr) {
    for (Batch* b : parts) {
      if (b->Holds(seq)) return b->What(seq, bad_attr, owner);
    }
    return Blame{"the batch", ""};
  };
  absl::Status s;
  auto send = [&] {
    if (messages == 0) return;
    std::vector<iovec> iov;
    for (Batch* b : parts) {
      const int n = nftnl_batch_iovec_len(b->raw());
      const size_t at = iov.size();
      iov.resize(at + n);
      nftnl_batch_iovec(b->raw(), iov.data() + at, n);
    }
    if (stats != nullptr) {
      stats->bytes = 0;
      for (const iovec& v : iov) stats->bytes += v.iov_len;
    }
    s = SendBatch(socket, iov, what);
  };
  if (alongside) {
    RunAlongside(send, alongside);
  } else {
    send();
  }
  if (stats != nullptr) stats->kernel = absl::Now() - built;
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NftWriter>> NftWriter::Create() {
  auto socket = OpenNetfilterSocket();
  if (!socket.ok()) return socket.status();
  return std::make_unique<NftWriter>(std::move(*socket));
}

absl::Status NftWriter::CommitFull(const Ruleset& to, CommitStats* stats, const std::function<void()>& alongside) {
  const absl::Time start = absl::Now();
  // Built in two parts at once; the second one's messages follow the
  // first's, then a last part ends the batch. One sendmsg, one transaction.
  const uint32_t split = SplitShard(to);
  Batch first(to.table, &seq_);
  Batch rest(to.table, nullptr, Batch::Kind::kFragment);
  RunAlongside([&] { BuildFull(first, to, split); }, [&] { BuildFullRest(rest, to, split); });
  rest.Renumber(&seq_);
  Batch last(to.table, nullptr, Batch::Kind::kFragment);
  last.End(&seq_);
  return SendParts(*socket_, {&first, &rest, &last}, true, to, to, start, stats, alongside);
}

absl::Status NftWriter::CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                                    const Ruleset& added, CommitStats* stats) {
  const absl::Time start = absl::Now();
  Batch b(table, &seq_);
  BuildDelta(b, base_shards, removed, added);
  b.End(&seq_);
  return SendParts(*socket_, {&b}, false, added, removed, start, stats);
}

absl::StatusOr<KernelTable> NftWriter::ReadTable(const std::string& table) {
  return dp::ReadTable(*socket_, &seq_, table);
}

namespace {

// The comment in a table's userdata, or "".
int CommentOf(const nftnl_udata* attr, void* data) {
  if (nftnl_udata_type(attr) == NFTNL_UDATA_TABLE_COMMENT) {
    const char* value = static_cast<const char*>(nftnl_udata_get(attr));
    const uint32_t len = nftnl_udata_len(attr);
    *static_cast<std::string*>(data) = std::string(value, strnlen(value, len));
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::optional<std::string>> NftWriter::TableComment(const std::string& table) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  const uint32_t seq = seq_++;
  nlmsghdr* nlh = nftnl_table_nlmsg_build_hdr(buf.data(), NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, seq);
  nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, table.c_str());
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  const iovec iov{nlh, nlh->nlmsg_len};
  if (socket_->Send(&iov, 1) < 0) {
    return absl::UnavailableError(absl::StrCat("asking for table inet ", table, ": ", strerror(errno)));
  }
  // The kernel answers within sendmsg: the reply and the ack are queued.
  std::optional<std::string> comment;
  std::vector<char> in(MNL_SOCKET_BUFFER_SIZE * 4);
  for (;;) {
    const ssize_t len = socket_->Receive(in.data(), in.size());
    if (len < 0) {
      if (errno == EINTR) continue;  // the answer is still queued
      if (errno == EAGAIN) return comment;
      return absl::UnavailableError(absl::StrCat("reading table inet ", table, ": ", strerror(errno)));
    }
    // The socket reports a datagram's real length (MSG_TRUNC): never read
    // past the buffer (a table's reply is far smaller).
    int rem = static_cast<int>(std::min<size_t>(static_cast<size_t>(len), in.size()));
    for (nlmsghdr* m = reinterpret_cast<nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem); m = mnl_nlmsg_next(m, &rem)) {
      if (m->nlmsg_seq != seq) continue;
      if (m->nlmsg_type == NLMSG_ERROR) {
        const int err = -static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
        if (err == ENOENT) return std::optional<std::string>();
        if (err != 0) {
          return absl::UnavailableError(absl::StrCat("asking for table inet ", table, ": ", strerror(err)));
        }
        return comment;  // the ack ends the answer
      }
      nftnl_table* got = nftnl_table_alloc();
      if (nftnl_table_nlmsg_parse(m, got) == 0) {
        std::string text;
        uint32_t ulen = 0;
        if (const void* udata = nftnl_table_get_data(got, NFTNL_TABLE_USERDATA, &ulen)) {
          nftnl_udata_parse(udata, ulen, CommentOf, &text);
        }
        comment = text;
      }
      nftnl_table_free(got);
    }
  }
}

}  // namespace nftproxy::dp
