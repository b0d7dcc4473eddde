#include "dataplane/nft_dataplane.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/parallel.h"
#include "dataplane/adopt.h"
#include "dataplane/nft_writer.h"

namespace nftproxy::dp {

namespace {

// What a commit that reached the kernel reports.
void NoteCommit(const CommitStats& stats, absl::Duration compile, ApplyResult* r) {
  r->changed = true;
  r->messages = stats.messages;
  r->compile = compile;
  r->batch = stats.build;
  r->kernel = stats.kernel;
}

// Adds `sign` times each reference of `refs` to *delta.
void CountRefs(const std::map<IpAddr, uint32_t>& refs, int64_t sign, std::map<IpAddr, int64_t>* delta) {
  for (const auto& [addr, n] : refs) (*delta)[addr] += sign * n;
}

void CountUdp(const Service* svc, int64_t sign, std::map<FlowTarget, int64_t>* delta) {
  if (svc == nullptr) return;
  for (const ServicePort& p : svc->ports) {
    if (p.proto != L4Proto::kUdp) continue;
    for (const Backend& b : p.backends) (*delta)[FlowTarget{b.addr, b.port}] += sign;
  }
}

// The elements whose first reference `delta` adds go to *added, those whose
// last reference it takes go to *removed.
void PlanRefs(const std::map<IpAddr, int64_t>& delta, const std::map<IpAddr, uint32_t>& refs,
              std::map<IpAddr, uint32_t>* removed, std::map<IpAddr, uint32_t>* added) {
  for (const auto& [key, d] : delta) {
    auto it = refs.find(key);
    const int64_t have = it == refs.end() ? 0 : it->second;
    const int64_t now = have + d;
    if (have == 0 && now > 0) (*added)[key] = static_cast<uint32_t>(now);
    if (have > 0 && now == 0) (*removed)[key] = static_cast<uint32_t>(have);
  }
}

// Applies reference deltas; keys whose count drops to zero go to *gone.
template <typename K>
void ApplyRefs(const std::map<K, int64_t>& delta, std::map<K, uint32_t>* refs, std::vector<K>* gone = nullptr) {
  for (const auto& [key, d] : delta) {
    if (d == 0) continue;
    auto it = refs->find(key);
    const int64_t now = (it == refs->end() ? 0 : int64_t{it->second}) + d;
    if (now > 0) {
      (*refs)[key] = static_cast<uint32_t>(now);
      continue;
    }
    if (it != refs->end()) refs->erase(it);
    if (gone != nullptr) gone->push_back(key);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<NftDataplane>> NftDataplane::Create(const std::string& table, bool adopt_unmarked) {
  auto writer = NftWriter::Create();
  if (!writer.ok()) return writer.status();
  absl::StatusOr<std::optional<std::string>> comment = (*writer)->TableComment(table);
  if (!comment.ok()) return comment.status();
  if (comment->has_value() && **comment != kTableComment && !adopt_unmarked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table inet ", table, " exists and was not created by nftproxy (its comment is ",
        (*comment)->empty() ? "empty" : absl::StrCat("\"", **comment, "\""), ", not \"", kTableComment,
        "\"); nftproxy never changes a table it does not own. Choose another --table, or, if an older nftproxy "
        "made it, start once with --adopt-table"));
  }
  std::unique_ptr<NftDataplane> dp = Create(table, std::move(*writer), std::make_unique<ConntrackFlusher>());
  dp->on_kernel_ = true;
  return dp;
}

std::unique_ptr<NftDataplane> NftDataplane::Create(const std::string& table, std::unique_ptr<RulesetWriter> writer,
                                                   std::unique_ptr<FlowFlusher> flusher) {
  return std::unique_ptr<NftDataplane>(new NftDataplane(table, std::move(writer), std::move(flusher)));
}

absl::Status NftDataplane::WatchDrift(std::function<void(const std::string& what)> drift) {
  if (!drift) {
    monitor_.reset();
    return absl::OkStatus();
  }
  if (!on_kernel_) return Dataplane::WatchDrift(std::move(drift));
  absl::StatusOr<std::unique_ptr<DriftMonitor>> m = DriftMonitor::Start(table_, std::move(drift));
  if (!m.ok()) return m.status();
  monitor_ = std::move(*m);
  return absl::OkStatus();
}

absl::StatusOr<TraceNames> NftDataplane::NamesForTrace() const {
  if (!on_kernel_) return Dataplane::NamesForTrace();
  if (!committed_) return absl::FailedPreconditionError("nothing is installed yet: there is no ruleset to trace");
  TraceNames n;
  n.table = table_;
  Ruleset rs = Compile(InstalledModel(), table_, &indexes_, shards_);
  n.backends[0] = std::move(rs.backends[0]);
  n.backends[1] = std::move(rs.backends[1]);
  for (const auto& [key, index] : indexes_) n.port_keys[index] = key;
  return n;
}

absl::Status NftDataplane::Commit(const std::function<absl::Status()>& commit, const CommitStats& stats) {
  absl::Status s;
  if (monitor_ == nullptr) {
    s = commit();
  } else {
    monitor_->Bracket([&] {
      s = commit();
      // The generations this commit made: one batch taken, or none (nothing
      // to send, or not sent); a refused or unknown batch none or one.
      if (s.ok()) return stats.messages > 0 ? DriftMonitor::Moves{1, 1} : DriftMonitor::Moves{0, 0};
      if (absl::IsUnavailable(s)) return DriftMonitor::Moves{0, 0};
      return DriftMonitor::Moves{0, 1};
    });
  }
  // Unknown: the batch was sent but its replies were lost (SendBatch), so
  // it may have been applied. A refusal or a failed send applied nothing.
  if (s.code() == absl::StatusCode::kUnknown) needs_full_ = true;
  return s;
}

absl::Status NftDataplane::Reinstall(ApplyResult* result) {
  if (!committed_) return absl::FailedPreconditionError("nothing was committed yet");
  // The same services with the same tickets: only what differs when the
  // table can still be read and its fixed part is intact (a flushed chain,
  // a deleted element), else the whole table.
  const Model model = InstalledModel();
  const IndexMap known = indexes_;
  if (Adopt(model, result, &known).ok()) return absl::OkStatus();
  return CommitFull(model, result);
}

absl::Status NftDataplane::Apply(const Model& model, ApplyResult* result) {
  const NodeSettings node = NormalizedNode(model.node);
  if (committed_ && !needs_full_ && Ruleset::SameNode(node, node_)) {
    // Same skeleton: only the services that differ are compiled and sent.
    ModelChange change;
    std::set<std::string> keep;
    for (const Service& svc : model.services) {
      keep.insert(svc.Key());
      auto it = services_.find(svc.Key());
      if (it == services_.end() || it->second != svc) change.upserts.push_back(svc);
    }
    for (const auto& [key, svc] : services_) {
      if (!keep.count(key)) change.removes.push_back(key);
    }
    return Update(change, result);
  }
  if (!committed_) {
    // A table a previous run left keeps serving: change only what differs.
    const absl::Status adopted = Adopt(model, result);
    if (adopted.ok()) return adopted;
    if (!absl::IsUnimplemented(adopted) && !absl::IsNotFound(adopted)) {
      log::Info("replacing the table instead of adopting it",
                {{"table", Table()}, {"why", std::string(adopted.message())}});
    }
  }
  return CommitFull(model, result);
}

absl::Status NftDataplane::Adopt(const Model& model, ApplyResult* result, const IndexMap* known) {
  const absl::Time start = absl::Now();
  absl::StatusOr<KernelTable> kernel = writer_->ReadTable(table_);
  if (!kernel.ok()) return kernel.status();
  if (!kernel->exists) return absl::NotFoundError("there is no table yet");
  const absl::Duration read = absl::Now() - start;
  absl::StatusOr<AdoptPlan> plan = PlanAdoption(*kernel, model, table_, known);
  DiscardLater(std::move(*kernel));
  if (!plan.ok()) return plan.status();
  const absl::Duration compile = absl::Now() - start;
  CommitStats stats;
  if (absl::Status s = Commit(
          [&] { return writer_->CommitDelta(table_, plan->base_shards, plan->removed, plan->added, &stats); }, stats);
      !s.ok()) {
    // Unknown: needs_full_ is set and CommitFull follows; a refusal changed
    // nothing.
    return absl::FailedPreconditionError(absl::StrCat("the kernel refused the difference: ", s.message()));
  }
  std::map<std::string, Service> services;
  std::map<FlowTarget, int64_t> udp;
  for (const Service& svc : model.services) {
    CountUdp(&svc, 1, &udp);
    services.emplace_hint(services.end(), svc.Key(), svc);
  }
  ApplyResult r;
  Installed(&plan->desired, std::move(services), udp, &r);
  NoteCommit(stats, compile, &r);
  r.changed = stats.messages > 0;
  r.adopted = true;
  log::Info(known != nullptr ? "wrote what differs from the desired ruleset" : "adopted the table the previous run left",
            {{"table", Table()},
             {"kept_chains", absl::StrCat(plan->kept_chains)},
             {"rewritten_chains", absl::StrCat(plan->rewritten_chains)},
             {"kept_tickets", absl::StrCat(plan->kept_indexes)},
             {"messages", absl::StrCat(stats.messages)},
             {"read", absl::FormatDuration(absl::Trunc(read, absl::Microseconds(100)))},
             {"compare", absl::FormatDuration(absl::Trunc(compile - read, absl::Microseconds(100)))},
             {"commit", absl::FormatDuration(absl::Trunc(stats.kernel, absl::Microseconds(100)))}});
  DiscardLater(std::move(*plan));
  if (result) *result = r;
  return absl::OkStatus();
}

absl::Status NftDataplane::CommitFull(const Model& model, ApplyResult* result) {
  const absl::Time start = absl::Now();
  Ruleset rs = Compile(model, table_, committed_ ? &indexes_ : nullptr, committed_ ? shards_ : 0);
  const absl::Duration compile = absl::Now() - start;
  uint32_t top = 0;
  for (const auto& [key, index] : rs.indexes) top = std::max(top, index + 1);
  if (top > kMaxIndex + 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model has ", rs.indexes.size(), " service ports; at most ", kMaxIndex + 1, " fit the ticket"));
  }
  // The services as the dataplane will keep them, copied while the kernel
  // takes the batch.
  std::map<std::string, Service> services;
  std::map<FlowTarget, int64_t> udp;
  auto record = [&] {
    for (const Service& svc : model.services) {
      CountUdp(&svc, 1, &udp);
      services.emplace_hint(services.end(), svc.Key(), svc);
    }
  };
  CommitStats stats;
  if (auto s = Commit([&] { return writer_->CommitFull(rs, &stats, record); }, stats); !s.ok()) return s;
  ApplyResult r;
  Installed(&rs, std::move(services), udp, &r);
  DiscardLater(std::move(rs));
  NoteCommit(stats, compile, &r);
  r.full = true;
  if (result) *result = r;
  return absl::OkStatus();
}

void NftDataplane::Installed(Ruleset* rs, std::map<std::string, Service> services,
                             const std::map<FlowTarget, int64_t>& udp, ApplyResult* r) {
  uint32_t top = 0;
  for (const auto& [key, index] : rs->indexes) top = std::max(top, index + 1);
  committed_ = true;
  needs_full_ = false;
  node_ = rs->node;
  services_.swap(services);
  DiscardLater(std::move(services));  // the previous ones
  indexes_ = std::move(rs->indexes);
  next_index_ = top;
  free_indexes_.clear();
  std::vector<bool> used(top, false);
  for (const auto& [key, index] : indexes_) used[index] = true;
  for (uint32_t i = 0; i < top; ++i) {
    if (!used[i]) free_indexes_.insert(i);
  }
  shards_ = rs->shards;
  {
    std::set<std::string> names;
    for (const auto& [name, owner] : rs->counters) names.insert(names.end(), name);
    absl::MutexLock lock(&names_mu_);
    counter_names_.swap(names);
  }
  cluster_ip_refs_ = std::move(rs->cluster_ips);
  hairpin_refs_ = std::move(rs->hairpin);
  // UDP endpoints that no longer exist anywhere.
  std::vector<FlowTarget> gone;
  for (const auto& [target, n] : udp_refs_) {
    if (!udp.count(target)) gone.push_back(target);
  }
  udp_refs_.clear();
  for (const auto& [target, n] : udp) udp_refs_.emplace_hint(udp_refs_.end(), target, static_cast<uint32_t>(n));
  ForgetUdpTargets(gone, r);
}

uint32_t NftDataplane::NewIndex(std::vector<uint32_t>* taken) {
  uint32_t index;
  if (!free_indexes_.empty()) {
    index = *free_indexes_.begin();
    free_indexes_.erase(free_indexes_.begin());
  } else {
    index = next_index_++;
  }
  taken->push_back(index);
  return index;
}

absl::Status NftDataplane::Update(const ModelChange& change, ApplyResult* result) {
  if (!committed_) return absl::FailedPreconditionError("the dataplane has no full model yet (Apply first)");
  if (needs_full_) {
    // A failed commit may have reached the kernel: the whole table again,
    // with the change (even an empty one).
    std::map<std::string, Service> next = services_;
    for (const std::string& key : change.removes) next.erase(key);
    for (const Service& svc : change.upserts) next.insert_or_assign(svc.Key(), svc);
    Model model;
    model.node = node_;
    for (auto& [key, svc] : next) model.services.push_back(std::move(svc));
    return CommitFull(model, result);
  }
  const absl::Time start = absl::Now();
  // One entry per service: its new value, or nullptr to remove it.
  std::map<std::string, const Service*> wanted;
  for (const std::string& key : change.removes) wanted[key] = nullptr;
  for (const Service& svc : change.upserts) wanted[svc.Key()] = &svc;

  Ruleset removed, added;
  std::map<IpAddr, int64_t> cluster_ips, hairpin;
  std::map<FlowTarget, int64_t> udp;
  // Indexes handed out by this change; they go back if it fails. Indexes it
  // frees are reused only by later changes, so one batch never deletes and
  // adds the same ticket.
  std::vector<uint32_t> taken;
  const uint32_t next_before = next_index_;
  auto give_back = [&] {
    for (uint32_t i : taken) {
      if (i < next_before) free_indexes_.insert(i);
    }
    next_index_ = next_before;
  };
  std::vector<std::pair<std::string, const Service*>> changed;
  for (const auto& [key, svc] : wanted) {
    auto old = services_.find(key);
    const Service* before = old == services_.end() ? nullptr : &old->second;
    if (before == nullptr && svc == nullptr) continue;
    if (before != nullptr && svc != nullptr && *before == *svc) continue;
    changed.emplace_back(key, svc);
    Ruleset from, to;
    from.node.counters = to.node.counters = node_.counters;
    from.node.endpoint_counters = to.node.endpoint_counters = node_.endpoint_counters;
    if (before != nullptr) CompileService(*before, indexes_, &from);
    if (svc != nullptr) {
      IndexMap mine;
      for (const std::string& k : IndexKeys(*svc)) {
        auto it = indexes_.find(k);
        mine[k] = it != indexes_.end() ? it->second : NewIndex(&taken);
        if (mine[k] > kMaxIndex) {
          give_back();
          return BlameService(absl::ResourceExhaustedError(absl::StrCat(ServiceOwner(key),
                                                                        ": no free service-port index (at most ",
                                                                        kMaxIndex + 1, " service ports)")),
                              ServiceOwner(key));
        }
      }
      CompileService(*svc, mine, &to);
    }
    Diff(from, to, &removed, &added);
    CountRefs(from.cluster_ips, -1, &cluster_ips);
    CountRefs(to.cluster_ips, 1, &cluster_ips);
    CountRefs(from.hairpin, -1, &hairpin);
    CountRefs(to.hairpin, 1, &hairpin);
    CountUdp(before, -1, &udp);
    CountUdp(svc, 1, &udp);
  }
  if (changed.empty()) {
    if (result) *result = ApplyResult{};
    return absl::OkStatus();
  }
  PlanRefs(cluster_ips, cluster_ip_refs_, &removed.cluster_ips, &added.cluster_ips);
  PlanRefs(hairpin, hairpin_refs_, &removed.hairpin, &added.hairpin);
  added.shards = std::max(added.shards, shards_);
  added.node = node_;  // new shards' objects depend on it
  const absl::Duration compile = absl::Now() - start;

  CommitStats stats;
  absl::Status s = Commit([&] { return writer_->CommitDelta(table_, shards_, removed, added, &stats); }, stats);
  if (!s.ok()) {
    give_back();
    // The kernel may have drifted from what we believe (someone deleted or
    // edited our table). One full replacement repairs that; if the change
    // itself is what the kernel refuses, the full batch fails the same way.
    Model model = InstalledModel();
    std::map<std::string, Service> next;
    for (Service& svc : model.services) next.emplace(svc.Key(), std::move(svc));
    for (const auto& [key, svc] : changed) {
      if (svc == nullptr) next.erase(key);
      else next.insert_or_assign(key, *svc);
    }
    model.services.clear();
    for (auto& [key, svc] : next) model.services.push_back(std::move(svc));
    return CommitFull(model, result);
  }
  // The kernel has it; make our record match.
  {
    absl::MutexLock lock(&names_mu_);
    for (const auto& [name, owner] : removed.counters) {
      if (!added.counters.count(name)) counter_names_.erase(name);
    }
    for (const auto& [name, owner] : added.counters) counter_names_.insert(name);
  }
  for (const auto& [key, index] : removed.indexes) {
    if (!added.indexes.count(key)) {
      indexes_.erase(key);
      free_indexes_.insert(index);
    }
  }
  for (const auto& [key, index] : added.indexes) indexes_[key] = index;
  for (const auto& [key, svc] : changed) {
    if (svc == nullptr) services_.erase(key);
    else services_.insert_or_assign(key, *svc);
  }
  ApplyRefs(cluster_ips, &cluster_ip_refs_);
  ApplyRefs(hairpin, &hairpin_refs_);
  shards_ = added.shards;
  ApplyResult r;
  std::vector<FlowTarget> gone;
  ApplyRefs(udp, &udp_refs_, &gone);
  ForgetUdpTargets(gone, &r);
  NoteCommit(stats, compile, &r);
  if (result) *result = r;
  return absl::OkStatus();
}

void NftDataplane::ForgetUdpTargets(const std::vector<FlowTarget>& gone, ApplyResult* result) {
  if (gone.empty()) return;
  // The ruleset is committed either way; a failure here only delays the
  // move of old UDP flows until their conntrack entries time out.
  auto n = flusher_->DeleteUdpFlowsTo(gone);
  if (n.ok()) {
    result->flows_deleted = *n;
  } else {
    fprintf(stderr, "nftproxy: deleting UDP flows of removed endpoints: %s\n",
            std::string(n.status().message()).c_str());
  }
}

absl::StatusOr<std::vector<PortConnections>> NftDataplane::ReadCounters(const ServiceFilter& keep) const {
  if (!on_kernel_) return Dataplane::ReadCounters(keep);
  // A socket of its own: the writer's belongs to the writing thread.
  absl::StatusOr<std::unique_ptr<NetlinkSocket>> socket = OpenNetfilterSocket();
  if (!socket.ok()) return socket.status();
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&names_mu_);
    if (!keep) {
      names.assign(counter_names_.begin(), counter_names_.end());
    } else {
      for (const std::string& name : counter_names_) {
        absl::string_view ns, service;
        if (ServiceOfCounterName(name, &ns, &service) && keep(ns, service)) names.push_back(name);
      }
    }
  }
  uint32_t seq = 1;
  absl::StatusOr<KernelCounters> counters = ReadCountersByName(**socket, &seq, table_, names);
  if (!counters.ok()) return counters.status();
  return ConnectionsOf(*counters);
}

Model NftDataplane::InstalledModel() const {
  Model m;
  m.node = node_;
  m.services.reserve(services_.size());
  for (const auto& [key, svc] : services_) m.services.push_back(svc);
  return m;
}

namespace {

// The installed model and its indexes, compiled and rendered on demand.
class CopiedRuleset final : public InstalledRuleset {
 public:
  CopiedRuleset(Model model, std::string table, IndexMap indexes, uint32_t shards, bool on_kernel)
      : model_(std::move(model)),
        table_(std::move(table)),
        indexes_(std::move(indexes)),
        shards_(shards),
        on_kernel_(on_kernel) {}
  void Render(const std::function<bool(absl::string_view)>& sink) const override {
    RenderTo(Compile(model_, table_, &indexes_, shards_), kRenderPiece, sink);
  }
  absl::StatusOr<std::vector<std::string>> KernelDifferences() const override {
    if (!on_kernel_) return InstalledRuleset::KernelDifferences();
    // A socket of its own: the writer's stays the writer's.
    absl::StatusOr<std::unique_ptr<NetlinkSocket>> socket = OpenNetfilterSocket();
    if (!socket.ok()) return socket.status();
    uint32_t seq = 1;
    absl::StatusOr<KernelTable> kernel = ReadTable(**socket, &seq, table_);
    if (!kernel.ok()) return kernel.status();
    return dp::KernelDifferences(*kernel, Compile(model_, table_, &indexes_, shards_));
  }

 private:
  static constexpr size_t kRenderPiece = 1 << 20;
  const Model model_;
  const std::string table_;
  const IndexMap indexes_;
  const uint32_t shards_;
  const bool on_kernel_;
};

}  // namespace

std::unique_ptr<InstalledRuleset> NftDataplane::Snapshot() const {
  if (!committed_) return nullptr;
  return std::make_unique<CopiedRuleset>(InstalledModel(), table_, indexes_, shards_, on_kernel_);
}

std::string NftDataplane::InstalledService(const std::string& key) const {
  if (!committed_) return "";
  Ruleset rs;
  rs.table = table_;
  rs.node = node_;
  if (auto it = services_.find(key); it != services_.end()) CompileService(it->second, indexes_, &rs);
  return Render(rs);
}

std::string NftDataplane::Installed() const {
  if (!committed_) return "";
  return Render(Compile(InstalledModel(), table_, &indexes_, shards_));
}

}  // namespace nftproxy::dp
