#include "dataplane/drift_monitor.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/netlink_socket.h"

namespace nftproxy::dp {

namespace {

int OpenSocket(bool events) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -1;
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  if (events) {
    // Room for the notifications of a large foreign batch; past it, ENOBUFS
    // says some were lost, which counts as possible drift.
    const int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    const int group = NFNLGRP_NFTABLES;
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

const char* What(uint16_t type) {
  switch (type) {
    case NFT_MSG_NEWTABLE: return "added or changed the table";
    case NFT_MSG_DELTABLE: return "deleted the table";
    case NFT_MSG_NEWCHAIN: return "added or changed a chain";
    case NFT_MSG_DELCHAIN: return "deleted a chain";
    case NFT_MSG_NEWRULE: return "added a rule";
    case NFT_MSG_DELRULE: return "deleted a rule";
    case NFT_MSG_NEWSET: return "added a set or map";
    case NFT_MSG_DELSET: return "deleted a set or map";
    case NFT_MSG_NEWSETELEM: return "added elements";
    case NFT_MSG_DELSETELEM: return "deleted elements";
    case NFT_MSG_NEWOBJ: return "added a counter or another object";
    case NFT_MSG_DELOBJ: return "deleted a counter or another object";
    default: return "changed an object";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DriftMonitor>> DriftMonitor::Start(const std::string& table, Handler drift) {
  const int events = OpenSocket(true);
  if (events < 0) {
    return absl::UnavailableError(absl::StrCat("listening to nf_tables notifications: ", strerror(errno)));
  }
  const int query = OpenSocket(false);
  if (query < 0) {
    const int err = errno;
    close(events);
    return absl::UnavailableError(absl::StrCat("opening a netlink socket: ", strerror(err)));
  }
  std::unique_ptr<DriftMonitor> m(new DriftMonitor(table, std::move(drift), events, query));
  {
    absl::MutexLock lock(&m->mu_);
    absl::StatusOr<uint32_t> gen = m->GenerationLocked();
    if (!gen.ok()) return gen.status();
    m->known_generation_ = *gen;
  }
  m->thread_ = std::thread([p = m.get()] { p->Loop(); });
  return m;
}

DriftMonitor::DriftMonitor(std::string table, Handler drift, int events_fd, int query_fd)
    : table_(std::move(table)), drift_(std::move(drift)), events_fd_(events_fd), query_fd_(query_fd) {}

DriftMonitor::~DriftMonitor() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  close(events_fd_);
  absl::MutexLock lock(&mu_);
  close(query_fd_);
}

absl::StatusOr<uint32_t> DriftMonitor::Generation() {
  absl::MutexLock lock(&mu_);
  return GenerationLocked();
}

absl::StatusOr<uint32_t> DriftMonitor::GenerationLocked() {
  char buf[256] = {};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = ++seq_;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  if (send(query_fd_, nlh, nlh->nlmsg_len, 0) < 0) {
    return absl::UnavailableError(absl::StrCat("asking for the ruleset generation: ", strerror(errno)));
  }
  std::vector<char> in(MNL_SOCKET_BUFFER_SIZE);
  for (;;) {
    const ssize_t len = recv(query_fd_, in.data(), in.size(), 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("reading the ruleset generation: ", strerror(errno)));
    }
    int rem = static_cast<int>(len);
    for (const nlmsghdr* m = reinterpret_cast<nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem);
         m = mnl_nlmsg_next(m, &rem)) {
      if (m->nlmsg_seq != seq_) continue;
      if (m->nlmsg_type == NLMSG_ERROR) {
        const int err = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
        return absl::UnavailableError(absl::StrCat("asking for the ruleset generation: ", strerror(err)));
      }
      for (const nlattr* a : NetlinkAttrs(m, sizeof(nfgenmsg))) {
        if (mnl_attr_get_type(a) == NFTA_GEN_ID) return ntohl(mnl_attr_get_u32(a));
      }
    }
  }
}

void DriftMonitor::SetMembership(bool on) {
  const int group = NFNLGRP_NFTABLES;
  setsockopt(events_fd_, SOL_NETLINK, on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group, sizeof(group));
}

void DriftMonitor::Bracket(const std::function<Moves()>& commit) {
  // Notifications already queued are someone else's; the monitor's thread
  // reads them.
  absl::StatusOr<uint32_t> before, after;
  {
    absl::MutexLock lock(&mu_);
    before = GenerationLocked();
    in_bracket_ = true;
  }
  SetMembership(false);
  const Moves ours = commit();
  std::string report;
  {
    absl::MutexLock lock(&mu_);
    after = GenerationLocked();
    SetMembership(true);
    in_bracket_ = false;
    if (before.ok() && after.ok()) {
      const uint32_t moved = *after - *before;
      if (moved < ours.min || moved > ours.max) {
        report = absl::StrCat("another program committed to nf_tables while nftproxy did (generation ", *before,
                              " -> ", *after, "); inet ", table_, " may have changed");
      }
      known_generation_ = std::max(known_generation_, *after);
    }
  }
  if (!report.empty()) drift_(report);
}

void DriftMonitor::Drain() {
  std::vector<char> in(1 << 16);
  for (;;) {
    const ssize_t len = recv(events_fd_, in.data(), in.size(), MSG_DONTWAIT);
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // Notifications were lost: whatever they said may have touched the
        // table.
        {
          absl::MutexLock lock(&mu_);
          touched_.clear();
          if (absl::StatusOr<uint32_t> g = GenerationLocked(); g.ok()) known_generation_ = *g;
        }
        drift_(absl::StrCat("nf_tables notifications were lost (ENOBUFS); inet ", table_, " may have changed"));
        continue;
      }
      return;  // EAGAIN: nothing queued
    }
    int rem = static_cast<int>(len);
    for (const nlmsghdr* m = reinterpret_cast<nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem);
         m = mnl_nlmsg_next(m, &rem)) {
      if ((m->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) continue;
      const uint16_t type = m->nlmsg_type & 0xff;
      if (m->nlmsg_len < NLMSG_HDRLEN + sizeof(nfgenmsg)) continue;
      const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(m));
      std::string report;
      {
        absl::MutexLock lock(&mu_);
        if (type == NFT_MSG_NEWGEN) {
          // The end of a batch: who made it.
          uint32_t gen = 0, pid = 0;
          std::string proc;
          for (const nlattr* a : NetlinkAttrs(m, sizeof(nfgenmsg))) {
            switch (mnl_attr_get_type(a)) {
              case NFTA_GEN_ID: gen = ntohl(mnl_attr_get_u32(a)); break;
              case NFTA_GEN_PROC_PID: pid = ntohl(mnl_attr_get_u32(a)); break;
              case NFTA_GEN_PROC_NAME: proc = mnl_attr_get_str(a); break;
            }
          }
          known_generation_ = std::max(known_generation_, gen);
          if (!touched_.empty()) {
            report = absl::StrCat(proc.empty() ? "another program" : proc, "[", pid, "] changed inet ", table_, ": ",
                                  touched_);
            touched_.clear();
          }
        } else if (type != NFT_MSG_TRACE && nfg->nfgen_family == NFPROTO_INET) {
          // Attribute 1 names the table in every object's message.
          for (const nlattr* a : NetlinkAttrs(m, sizeof(nfgenmsg))) {
            if (mnl_attr_get_type(a) == 1 && mnl_attr_get_payload_len(a) > 0 && mnl_attr_get_str(a) == table_) {
              const char* what = What(type);
              if (touched_.find(what) == std::string::npos) {
                absl::StrAppend(&touched_, touched_.empty() ? "" : ", ", what);
              }
              break;
            }
          }
        }
      }
      if (!report.empty()) drift_(report);
    }
  }
}

void DriftMonitor::Loop() {
  while (!stopping_) {
    pollfd p{events_fd_, POLLIN, 0};
    const int ready = poll(&p, 1, 1000);
    if (stopping_) return;
    if (ready > 0) {
      Drain();
      continue;
    }
    // Quiet for a second: the generation should be the last one accounted
    // for. (A batch committed right now is announced first; read it, then
    // compare again.) A Bracket under way accounts for its own commit
    // when it ends; until then its generation may be ahead.
    std::string report;
    {
      absl::MutexLock lock(&mu_);
      if (in_bracket_) continue;
      absl::StatusOr<uint32_t> gen = GenerationLocked();
      if (!gen.ok() || *gen == known_generation_) continue;
    }
    Drain();
    {
      absl::MutexLock lock(&mu_);
      absl::StatusOr<uint32_t> gen = GenerationLocked();
      if (!in_bracket_ && gen.ok() && *gen != known_generation_) {
        report = absl::StrCat("the ruleset generation moved (", known_generation_, " -> ", *gen,
                              ") without a notification; inet ", table_, " may have changed");
        known_generation_ = *gen;
      }
    }
    if (!report.empty()) drift_(report);
  }
}

}  // namespace nftproxy::dp
