#include "server/write_engine.h"

#include <algorithm>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/parallel.h"
#include "server/listing.h"
#include "server/model_builder.h"
#include "server/wire.h"

namespace nftproxy::server {

namespace {

// The metrics' name for what a commit wrote: the table a previous run (or
// drift) left, adopted with only its differences; the whole table; or a
// write's difference.
const char* CommitKind(const dp::ApplyResult& r) { return r.adopted ? "adopt" : r.full ? "full" : "delta"; }

// Commits changing at least this many keys record themselves on another
// thread while the kernel commits.
constexpr size_t kParallelKeys = 256;

void SetTime(google::protobuf::Timestamp* ts, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

// A dataplane error that names a service points at that Service resource.
absl::Status FromDataplane(absl::Status s) {
  if (std::optional<std::string> key = dp::ServiceOfError(s)) {
    const size_t slash = key->find('/');
    return AboutResource(std::move(s), Key{v1::SERVICE, key->substr(0, slash), key->substr(slash + 1)});
  }
  return s;
}

// Splits a serialized `type` into the bytes of each element of its field
// `field` (the resources) and the rest, parsed into *req.
template <typename Request>
absl::Status SplitRequest(absl::string_view bytes, int field, const char* type,
                          std::vector<absl::string_view>* items, Request* req) {
  std::string rest;
  if (auto s = SplitField(bytes, field, type, items, &rest); !s.ok()) return s;
  if (!req->ParseFromString(rest)) {
    return absl::InvalidArgumentError(absl::StrCat(type, ": not a valid protobuf message"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteEngine::Restore(State state) {
  absl::MutexLock lock(&mu_);
  std::vector<Key> all;
  for (const auto& [k, r] : state.objects) {
    if (auto s = ValidateResource(r, options_.limits); !s.ok()) return s;
    all.push_back(k);
  }
  Desired restored(std::move(state));
  if (auto s = ValidateChange(restored, all, Rules()); !s.ok()) return s;
  // A saved port that cannot be bound now is logged, not fatal.
  if (options_.health_ports != nullptr) (void)PrepareHealthPortsLocked(restored, nullptr, true);
  if (auto s = ApplyAllLocked(restored); !s.ok()) {
    if (options_.health_ports != nullptr) options_.health_ports->Abort();
    return s;
  }
  if (options_.health_ports != nullptr) options_.health_ports->Commit();
  UpdateDnsLocked(restored, nullptr);
  desired_ = std::move(restored);
  for (const auto& [k, r] : desired_.state().objects) CountResource(r, +1);
  if (options_.store != nullptr) {
    // Start this run's journal from a snapshot of what was restored.
    if (auto saved = options_.store->Snapshot(desired_.state()); !saved.ok()) NoteError("saving the state", saved);
  }
  // Watchers can resume from the restored revision on, not from before.
  watch_.Reset(desired_.revision());
  return absl::OkStatus();
}

WriteEngine::~WriteEngine() {
  if (watching_drift_) dp_->WatchDrift(nullptr).IgnoreError();  // stopping cannot fail
}

absl::Status WriteEngine::RepairDrift() {
  absl::Status s = dp_->WatchDrift([this](const std::string& what) { OnDrift(what); });
  watching_drift_ = s.ok();
  return s;
}

void WriteEngine::OnDrift(const std::string& what) {
  log::Warning("the table changed outside nftproxy", {{"table", dp_->Table()}, {"what", what}});
  if (options_.metrics != nullptr) options_.metrics->drift_detected->Add({});
  {
    absl::MutexLock lock(&drift_mu_);
    ++drift_repairs_;
    last_drift_ = what;
    last_drift_time_ = absl::Now();
  }
  QueueRepair();
}

void WriteEngine::QueueRepair() {
  // One repair at a time; drift seen while one waits is repaired by it.
  if (repair_queued_.exchange(true)) return;
  {
    // Pending (for /healthz) until a repair succeeds.
    absl::MutexLock lock(&health_mu_);
    if (repair_pending_since_ == absl::InfiniteFuture()) repair_pending_since_ = absl::Now();
  }
  repairs_.Post([this] {
    absl::MutexLock lock(&mu_);
    repair_queued_ = false;
    auto repaired = [this] {
      absl::MutexLock health_lock(&health_mu_);
      repair_pending_since_ = absl::InfiniteFuture();
      last_updated_ = absl::Now();
    };
    if (!dp_full_) {  // nothing installed yet: the first commit writes everything
      repaired();
      return;
    }
    const absl::Time start = absl::Now();
    dp::ApplyResult result;
    absl::Status s = FromDataplane(dp_->Reinstall(&result));
    NoteCommit(CommitKind(result), result, s);
    if (s.ok()) {
      repaired();
      if (options_.metrics != nullptr) options_.metrics->drift_repairs->Add({});
    }
    if (!s.ok()) {
      NoteError("repairing drift", s);
      log::Error("could not repair the table", {{"table", dp_->Table()}, {"error", std::string(s.message())}});
      return;
    }
    log::Info("repaired the table: the desired ruleset is installed again",
              {{"table", dp_->Table()}, {"took", absl::FormatDuration(absl::Trunc(absl::Now() - start,
                                                                                  absl::Microseconds(100)))}});
  });
}

StateRules WriteEngine::Rules() const { return StateRules{options_.node_port_min, options_.node_port_max}; }

absl::Status WriteEngine::ApplyAllLocked(const Desired& d, Phases* phases, dp::ApplyResult* out) {
  const absl::Time start = absl::Now();
  dp::ApplyResult local;
  dp::ApplyResult& result = out != nullptr ? *out : local;
  dp::Model model = BuildModel(d, options_.node_name, options_.node);
  if (phases != nullptr) phases->Mark("model");
  absl::Status s = FromDataplane(dp_->Apply(model, &result));
  if (phases != nullptr) phases->MarkDataplane(result);
  DiscardLater(std::move(model));
  NoteSyncLocked(start, s);
  NoteCommit(CommitKind(result), result, s);
  if (s.ok()) {
    dp_full_ = true;
    ready_ = true;
    absl::MutexLock lock(&health_mu_);
    repair_pending_since_ = absl::InfiniteFuture();  // the whole table was just written
  }
  return s;
}

void WriteEngine::NoteCommit(const char* kind, const dp::ApplyResult& result, const absl::Status& s) {
  EngineMetrics* m = options_.metrics;
  if (m == nullptr) return;
  if (!s.ok()) {
    m->commit_failures->Add({});
    return;
  }
  if (result.flows_deleted > 0) m->flows_deleted->Add({}, result.flows_deleted);
  if (!result.changed) return;  // the kernel already matched: no batch
  m->commits->Add({kind});
  m->commit_messages->Observe({}, result.messages);
  m->last_commit->Set({}, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

void WriteEngine::CountResource(const v1::Resource& r, int sign) {
  EngineMetrics* m = options_.metrics;
  if (m == nullptr) return;
  m->resources->Add({KindName(KindOf(r))}, sign);
  if (!r.has_endpoint_slice()) return;
  int ready = 0, serving = 0, terminating = 0;
  for (const v1::Endpoint& e : r.endpoint_slice().endpoints()) {
    const v1::EndpointConditions& c = e.conditions();
    const bool is_ready = EndpointReady(c);
    ready += is_ready;
    serving += c.has_serving() ? c.serving() : is_ready;
    terminating += c.has_terminating() && c.terminating();
  }
  if (ready != 0) m->endpoints->Add({"ready"}, sign * ready);
  if (serving != 0) m->endpoints->Add({"serving"}, sign * serving);
  if (terminating != 0) m->endpoints->Add({"terminating"}, sign * terminating);
}

HealthState WriteEngine::Health() const {
  HealthState h;
  h.ready = ready_.load();
  absl::MutexLock lock(&health_mu_);
  h.last_updated = last_updated_;
  h.oldest_pending = repair_pending_since_;
  if (!pending_writes_.empty()) h.oldest_pending = std::min(h.oldest_pending, *pending_writes_.begin());
  // Cut off from the shared store: whatever changed there since is a change
  // pending for this node (so /healthz fails after --health-timeout, as it
  // does for a write that cannot reach the kernel).
  absl::MutexLock shared_lock(&shared_mu_);
  if (!shared_error_.empty()) h.oldest_pending = std::min(h.oldest_pending, shared_error_since_);
  return h;
}

void WriteEngine::NoteSyncLocked(absl::Time start, const absl::Status& s) {
  last_sync_ = absl::Now();
  last_sync_duration_ = last_sync_ - start;
}

absl::Status WriteEngine::FinishLocked(Write* w, bool dry_run, uint64_t* revision,
                                       const std::function<void()>& report) {
  if (!w->any_change) {
    if (report) report();
    *revision = desired_.revision();
    // A retry of a write whose save failed finds nothing to change: saving
    // the whole state is what it still needs.
    if (unsaved_ && !dry_run && options_.store != nullptr) {
      if (absl::Status saved = options_.store->Snapshot(desired_.state()); !saved.ok()) {
        NoteError("saving the state", saved);
        return UnsavedError(saved);
      }
      unsaved_ = false;
      log::Info("the state is saved again", {{"revision", absl::StrCat(desired_.revision())}});
    }
    return absl::OkStatus();
  }
  absl::Status s = CommitLocked(w, dry_run, report);
  if (!s.ok() || dry_run) w->txn.Rollback();
  *revision = desired_.revision();
  if (s.ok() && !w->unsaved.ok()) return w->unsaved;
  return s;
}

absl::Status WriteEngine::UnsavedError(const absl::Status& saved) {
  return absl::DataLossError(absl::StrCat(
      "the change is applied and serving, but saving it failed (", saved.message(),
      "): a restart would lose it. Fix the state dir (see the log and `nftproxy status`), then repeat the write; "
      "the repeat saves the whole state"));
}

absl::Status WriteEngine::CommitLocked(Write* w, bool dry_run, const std::function<void()>& report) {
  Txn& txn = w->txn;
  const std::vector<Key> changed = txn.Keys();
  w->changed = changed.size();
  if (w->scope != nullptr && !w->scope->Unrestricted()) {
    std::set<std::string> namespaces;
    for (const Key& k : changed) namespaces.insert(k.ns);
    if (auto s = w->scope->CheckWrite(w->source, namespaces); !s.ok()) return s;
  }
  if (auto s = ValidateChange(desired_, changed, Rules()); !s.ok()) return s;
  w->phases.Mark("validate");
  // Only the services this write can have changed are rebuilt and sent
  // (before the first full commit, everything is).
  dp::ModelChange change;
  std::set<std::pair<std::string, std::string>> affected;
  if (dp_full_ || dry_run) affected = AffectedServices(txn);
  const bool first_commit = !dp_full_;
  for (const auto& [ns, name] : affected) {
    if (auto svc = BuildService(desired_, ns, name, options_.node_name)) {
      change.upserts.push_back(std::move(*svc));
    } else {
      change.removes.push_back(absl::StrCat(ns, "/", name));
    }
  }
  w->phases.Mark("model");
  if (dry_run) {
    if (report) report();
    return absl::OkStatus();
  }
  // Health-check node ports are opened before the commit: one that cannot
  // be bound fails the write with nothing changed.
  // (A change another node committed to the shared log is applied here
  // whatever the ports: best effort, as at start-up.)
  if (options_.health_ports != nullptr) {
    if (auto hs = PrepareHealthPortsLocked(desired_, dp_full_ ? &txn : nullptr, w->replay); !hs.ok()) return hs;
  }
  const std::optional<LogPosition> pos_before = shared_pos_;
  if (w->replay) {
    // The entry's revision; a log whose revisions are behind the cached
    // state's (another etcd) moves on from the cache's.
    const uint64_t r = static_cast<uint64_t>(std::max<int64_t>(w->replay_revision, 0));
    desired_.set_revision(r > desired_.revision() ? r : desired_.revision() + 1);
  } else if (options_.shared != nullptr) {
    // Committed to the log first: from here on the change is the cluster's.
    if (absl::Status a = AppendLocked(w, changed); !a.ok()) {
      if (options_.health_ports != nullptr) options_.health_ports->Abort();
      return a;
    }
  } else {
    desired_.set_revision(desired_.revision() + 1);
  }
  absl::Status s;
  // Both run while this thread holds mu_; `prepare` may run on another
  // thread meanwhile (RunAlongside waits for it), reading desired_ only.
  auto commit = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dp::ApplyResult result;
    if (!dp_full_) {
      // Nothing committed yet in this run: the first commit is the whole state.
      s = ApplyAllLocked(desired_, &w->phases, &result);
    } else {
      const absl::Time start = absl::Now();
      s = FromDataplane(dp_->Update(change, &result));
      w->phases.MarkDataplane(result);
      NoteSyncLocked(start, s);
      NoteCommit(CommitKind(result), result, s);
    }
    if (s.ok() && result.changed && options_.metrics != nullptr) {
      options_.metrics->programming_latency->Observe({}, absl::ToDoubleSeconds(absl::Now() - w->arrived));
    }
  };
  // What follows a commit only reads the state: the record for the state
  // store, the Watch events and the caller's report. For a large change it
  // is prepared on another thread while the kernel commits, and dropped if
  // the kernel refuses the change.
  StateStore::Pending pending;
  std::vector<v1::WatchEvent> events;
  // Exempt from the analysis: it reads desired_ on a thread that does not
  // hold mu_, while the thread that holds it waits for it (RunAlongside).
  auto prepare = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (options_.store != nullptr) pending = options_.store->Prepare(desired_.state(), changed);
    events = ChangeEvents(txn);
    if (report) report();
  };
  if (changed.size() >= kParallelKeys) {
    RunAlongside(commit, prepare);
    if (!s.ok() && options_.store != nullptr) options_.store->Abandon(pending);
  } else {
    commit();
    if (s.ok()) prepare();
  }
  if (options_.health_ports != nullptr) {
    if (s.ok()) {
      options_.health_ports->Commit();  // serve the new counts, close removed ports
    } else {
      options_.health_ports->Abort();
    }
  }
  if (absl::IsUnknown(s)) {
    // The kernel may or may not hold the change (its replies were lost); the
    // change is rolled back here, so the table is written again whole from
    // what the dataplane knows it held.
    log::Warning("a commit's outcome is unknown; re-installing the table", {{"error", std::string(s.message())}});
    QueueRepair();
  }
  if (!s.ok() && options_.shared != nullptr && !w->replay) {
    // In the log, not in this kernel: the follower applies it again as
    // another node's entry (and retries until the kernel takes it).
    shared_pos_ = pos_before;
    return absl::Status(s.code(), absl::StrCat("the change is committed to the shared state (revision ",
                                               desired_.revision(), ") but this node's kernel refused it; it is "
                                               "retried by the follower: ", s.message()));
  }
  if (!s.ok()) return s;
  UpdateDnsLocked(desired_, first_commit ? nullptr : &affected);
  for (const auto& [key, old] : txn.undo()) {
    if (old.has_value()) CountResource(*old, -1);
    if (const v1::Resource* now = desired_.Find(key)) CountResource(*now, +1);
  }
  w->phases.Mark("record");
  if (options_.store != nullptr) {
    // The kernel already holds the change, so it stays; but the caller
    // must know that a restart would lose it (FinishLocked returns this).
    if (auto saved = options_.store->Publish(std::move(pending)); !saved.ok()) {
      NoteError("saving the state", saved);
      log::Error("a committed change could not be saved", {{"error", std::string(saved.message())}});
      unsaved_ = true;
      w->unsaved = UnsavedError(saved);
    } else {
      unsaved_ = false;
    }
  }
  watch_.Publish(std::move(events), desired_.revision());
  w->phases.Mark("record");
  return absl::OkStatus();
}

absl::Status WriteEngine::PrepareHealthPortsLocked(const Desired& d, const Txn* txn, bool best_effort) {
  HealthPortChanges changes;
  if (txn != nullptr) {
    for (const auto& [ns, name] : AffectedServices(*txn)) {
      changes[{ns, name}] = HealthPortOf(d, ns, name, options_.node_name);
    }
  } else {
    const auto& objects = d.state().objects;
    for (auto it = objects.lower_bound(Key{v1::SERVICE, "", ""}); it != objects.end() && it->first.kind == v1::SERVICE;
         ++it) {
      if (auto p = HealthPortOf(d, it->first.ns, it->first.name, options_.node_name)) {
        changes[{it->first.ns, it->first.name}] = std::move(p);
      }
    }
  }
  return options_.health_ports->Prepare(changes, txn == nullptr, best_effort);
}

void WriteEngine::UpdateDnsLocked(const Desired& d, const std::set<std::pair<std::string, std::string>>* affected) {
  if (options_.dns == nullptr) return;
  DnsChanges changes;
  if (affected != nullptr) {
    for (const auto& [ns, name] : *affected) changes[{ns, name}] = DnsServiceOf(d, ns, name);
  } else {
    const auto& objects = d.state().objects;
    for (auto it = objects.lower_bound(Key{v1::SERVICE, "", ""}); it != objects.end() && it->first.kind == v1::SERVICE;
         ++it) {
      changes[{it->first.ns, it->first.name}] = DnsServiceOf(d, it->first.ns, it->first.name);
    }
  }
  options_.dns->Update(changes, affected == nullptr);
}

void WriteEngine::NoteError(absl::string_view what, const absl::Status& s) {
  last_error_ = absl::StrCat(what, ": ", s.message());
  last_error_time_ = absl::Now();
}

void WriteEngine::LogWrite(const char* method, const std::string& source, size_t resources, bool dry_run,
                           const Write& w, const absl::Status& s) {
  const absl::Duration total = w.phases.Total();
  log::Fields fields = {{"method", method},
                        {"source", source},
                        {"resources", absl::StrCat(resources)},
                        {"changed", absl::StrCat(w.changed)},
                        {"revision", absl::StrCat(desired_.revision())},
                        {"took", absl::FormatDuration(absl::Trunc(total, absl::Microseconds(100)))}};
  if (dry_run) fields.emplace_back("dry_run", "true");
  if (!s.ok()) {
    fields.emplace_back("code", absl::StatusCodeToString(s.code()));
    fields.emplace_back("error", std::string(s.message()));
    log::Warning("write refused", fields);
    NoteError(method, s);
    return;
  }
  const bool slow = total >= options_.log_writes_over;
  if (!slow && !log::Enabled(log::Level::kDebug)) return;
  fields.emplace_back("phases", w.phases.Describe());
  log::Event(slow ? log::Level::kInfo : log::Level::kDebug, slow ? "slow write" : "write", fields);
}

absl::Status WriteEngine::RunWrite(const char* method, const std::string& source, size_t resources, bool dry_run,
                                   const Scope* scope, const std::function<absl::Status(Write*)>& body) {
  // Waiting from here on: /healthz looks at the oldest write not yet done.
  const absl::Time arrived = absl::Now();
  std::multiset<absl::Time>::iterator pending;
  {
    absl::MutexLock lock(&health_mu_);
    pending = pending_writes_.insert(arrived);
  }
  absl::Status s;
  std::vector<std::pair<const char*, absl::Duration>> phases;
  {
    absl::MutexLock lock(&mu_);
    // A write that lost the race to the shared log is run again on the
    // state caught up with it, a bounded number of times.
    for (int attempt = 0;; ++attempt) {
      Write w(Txn(&desired_), absl::Now());
      w.arrived = arrived;
      w.scope = scope;
      w.source = source;
      // A caller limited to some sources is refused before any work.
      s = scope != nullptr ? scope->CheckWrite(source, {}) : absl::OkStatus();
      if (s.ok()) s = body(&w);
      const bool again = w.lost_race && attempt < options_.shared_retries;
      if (!again) LogWrite(method, source, resources, dry_run, w, s);
      if (options_.metrics != nullptr) phases = w.phases.all();
      // The request's parsed resources and the undo log: freed off the reply's path.
      DiscardLater(std::move(w));
      if (!again) break;
      if (absl::Status c = CatchUpLocked(); !c.ok()) {
        s = SharedStoreError(c);
        break;
      }
    }
  }
  const absl::Time done = absl::Now();
  {
    absl::MutexLock lock(&health_mu_);
    pending_writes_.erase(pending);
    last_updated_ = done;
  }
  if (EngineMetrics* m = options_.metrics; m != nullptr) {
    m->writes->Add({method, absl::StatusCodeToString(s.code())});
    m->write_duration->Observe({method}, absl::ToDoubleSeconds(done - arrived));
    for (const auto& [phase, d] : phases) {
      std::string name = phase;
      std::replace(name.begin(), name.end(), ' ', '_');
      m->phase_duration->Observe({name}, absl::ToDoubleSeconds(std::max(d, absl::ZeroDuration())));
    }
  }
  return s;
}

absl::Status WriteEngine::ApplyAs(const char* method, absl::string_view bytes, v1::ApplyResponse* resp,
                                  const Scope* scope) {
  std::vector<absl::string_view> upserts;
  v1::ApplyRequest req;  // everything but the upserts
  if (auto s = SplitRequest(bytes, v1::ApplyRequest::kUpsertsFieldNumber, "ApplyRequest", &upserts, &req); !s.ok()) {
    return s;
  }
  return RunWrite(method, req.source(), upserts.size() + req.deletes_size(), req.dry_run(), scope,
                  [&](Write* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ApplyLocked(req, upserts, w, resp); });
}

absl::Status WriteEngine::ApplyLocked(const v1::ApplyRequest& req, const std::vector<absl::string_view>& upserts,
                                      Write* w, v1::ApplyResponse* resp) {
  resp->Clear();  // (a write re-run after losing the race to the shared log)
  std::vector<Incoming>& incoming = w->incoming =
      Examine(upserts, "upserts", req.source(), desired_, w->now, options_.limits);
  w->phases.Mark("examine");
  w->txn.Reserve(incoming.size() + req.deletes_size());
  auto fail = [w](absl::Status s) {
    w->txn.Rollback();
    return s;
  };
  for (const v1::ResourceRef& ref : req.deletes()) {
    const Key key = KeyOf(ref);
    if (auto s = StageDelete(key, ref.resource_version(), req.source(), w); !s.ok()) return fail(s);
    v1::ResourceRef* d = resp->add_deleted();
    *d = ref;
    d->set_namespace_(key.ns);
    resp->add_outcomes(OutcomeName(Outcome::kDeleted));
  }
  for (Incoming& in : incoming) {
    absl::StatusOr<Outcome> outcome = StageUpsert(in, req.source(), w);
    if (!outcome.ok()) return fail(outcome.status());
    resp->add_outcomes(OutcomeName(*outcome));
  }
  w->phases.Mark("stage");
  // The caller gets each upserted resource as stored. Exempt from the
  // analysis: FinishLocked may run it on another thread while this one
  // holds mu_ and waits for it.
  auto report = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (req.brief()) {
      resp->mutable_applied_refs()->Reserve(static_cast<int>(incoming.size()));
      for (const Incoming& in : incoming) {
        *resp->add_applied_refs() = RefOf(in.key, MetaOf(*desired_.Find(in.key)).resource_version());
      }
      return;
    }
    resp->mutable_applied()->Reserve(static_cast<int>(incoming.size()));
    for (const Incoming& in : incoming) *resp->add_applied() = *desired_.Find(in.key);
  };
  uint64_t revision = 0;
  absl::Status s = FinishLocked(w, req.dry_run(), &revision, report);
  resp->set_revision(revision);
  return s;
}

absl::Status WriteEngine::Sync(absl::string_view bytes, v1::SyncResponse* resp, const Scope* scope) {
  std::vector<absl::string_view> resources;
  v1::SyncRequest req;  // everything but the resources
  if (auto s = SplitRequest(bytes, v1::SyncRequest::kResourcesFieldNumber, "SyncRequest", &resources, &req);
      !s.ok()) {
    return s;
  }
  if (req.source().empty()) {
    return absl::InvalidArgumentError("source: required (the name of the owner whose resources are replaced)");
  }
  return RunWrite("Sync", req.source(), resources.size(), req.dry_run(), scope,
                  [&](Write* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return SyncLocked(req, resources, w, resp); });
}

absl::Status WriteEngine::SyncLocked(const v1::SyncRequest& req, const std::vector<absl::string_view>& resources,
                                     Write* w, v1::SyncResponse* resp) {
  resp->Clear();  // (a write re-run after losing the race to the shared log)
  std::vector<Incoming>& incoming = w->incoming =
      Examine(resources, "resources", req.source(), desired_, w->now, options_.limits);
  w->phases.Mark("examine");
  w->txn.Reserve(incoming.size());
  auto fail = [w](absl::Status s) {
    w->txn.Rollback();
    return s;
  };
  // Everything the source owns and the request leaves out is deleted; when
  // the request names as many of the source's resources as it owns, that is
  // nothing, and the scan is skipped. (Deletes first, so that a Sync may move
  // an address from a dropped service to a new one.)
  size_t named = 0;
  for (const Incoming& in : incoming) {
    if (!in.parsed.ok()) return fail(in.parsed);
    if (in.stored != nullptr && MetaOf(*in.stored).source() == req.source()) ++named;
  }
  if (named < desired_.CountOwnedBy(req.source())) {
    absl::flat_hash_set<Key> keep;
    keep.reserve(incoming.size());
    for (const Incoming& in : incoming) keep.insert(in.key);
    std::vector<std::pair<Key, uint64_t>> drop;
    for (const auto& [key, r] : desired_.state().objects) {
      if (MetaOf(r).source() == req.source() && keep.count(key) == 0) {
        drop.emplace_back(key, MetaOf(r).resource_version());
      }
    }
    for (const auto& [key, version] : drop) {
      if (auto s = StageDelete(key, 0, req.source(), w); !s.ok()) return fail(s);
      *resp->add_deleted() = RefOf(key, version);
    }
  }
  for (Incoming& in : incoming) {
    absl::StatusOr<Outcome> outcome = StageUpsert(in, req.source(), w);
    if (!outcome.ok()) return fail(outcome.status());
    if (*outcome == Outcome::kUnchanged) {
      resp->set_unchanged(resp->unchanged() + 1);
      continue;
    }
    const v1::ResourceRef ref = RefOf(in.key, MetaOf(*desired_.Find(in.key)).resource_version());
    *(*outcome == Outcome::kCreated ? resp->add_created() : resp->add_configured()) = ref;
  }
  w->phases.Mark("stage");
  uint64_t revision = 0;
  absl::Status s = FinishLocked(w, req.dry_run(), &revision, nullptr);
  resp->set_revision(revision);
  if (s.ok() && !req.dry_run()) {
    // What changed has the write's revision as its version (known only now
    // with a shared log).
    for (v1::ResourceRef& ref : *resp->mutable_created()) ref.set_resource_version(revision);
    for (v1::ResourceRef& ref : *resp->mutable_configured()) ref.set_resource_version(revision);
  }
  return s;
}

absl::Status WriteEngine::Delete(const v1::DeleteRequest& req, v1::DeleteResponse* resp, const Scope* scope) {
  v1::ApplyRequest apply;
  *apply.mutable_deletes() = req.refs();
  apply.set_source(req.source());
  apply.set_dry_run(req.dry_run());
  v1::ApplyResponse out;
  if (absl::Status s = ApplyAs("Delete", apply.SerializeAsString(), &out, scope); !s.ok()) return s;
  *resp->mutable_deleted() = out.deleted();
  resp->set_revision(out.revision());
  return absl::OkStatus();
}

absl::StatusOr<v1::Resource> WriteEngine::Get(const v1::ResourceRef& ref) const {
  const Key key = KeyOf(ref);
  absl::MutexLock lock(&mu_);
  const v1::Resource* r = desired_.Find(key);
  if (r == nullptr) return AboutResource(absl::NotFoundError(absl::StrCat(Describe(key), " not found")), key);
  return *r;
}

absl::StatusOr<v1::ListResponse> WriteEngine::List(const v1::ListRequest& req) const {
  absl::StatusOr<std::optional<Key>> after = ParsePageToken(req);
  if (!after.ok()) return after.status();
  const size_t size = req.page_size() == 0 ? kDefaultPageSize : std::min<size_t>(req.page_size(), kMaxPageSize);
  v1::ListResponse resp;
  absl::MutexLock lock(&mu_);
  std::optional<Key> last = ListPage(desired_.state(), req.kind(), req.namespace_(), after->has_value() ? &**after : nullptr,
                                     size, kMaxPageBytes,
                                     [&resp](const Key&, const v1::Resource& r) { *resp.add_resources() = r; });
  if (last) resp.set_next_page_token(PageToken(req, *last));
  resp.set_revision(desired_.revision());
  return resp;
}

namespace {

// Fills in where the kernel's table differs from `installed`.
absl::Status CompareWithKernel(const dp::InstalledRuleset* installed, v1::GetRulesetResponse* resp) {
  if (installed == nullptr) return absl::FailedPreconditionError("nothing was committed by this server run yet");
  absl::StatusOr<std::vector<std::string>> diffs = installed->KernelDifferences();
  if (!diffs.ok()) return diffs.status();
  resp->set_kernel_compared(true);
  for (std::string& line : *diffs) resp->add_kernel_differences(std::move(line));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteEngine::RunBetweenCommits(const std::function<absl::Status()>& fn) const {
  absl::MutexLock lock(&mu_);
  return fn();
}

absl::StatusOr<dp::TraceNames> WriteEngine::NamesForTrace() const {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<dp::TraceNames> names = dp_->NamesForTrace();
  if (!names.ok()) return names;
  // Endpoint names: "<slice>/<hostname or address>" (and the node), by
  // service and address.
  std::set<std::string> seen;
  for (const auto& [index, port_key] : names->port_keys) {
    const std::vector<std::string> parts = absl::StrSplit(port_key, '/');
    if (parts.size() < 2 || !seen.insert(parts[0] + "/" + parts[1]).second) continue;
    for (const std::string& slice : desired_.SlicesOf(parts[0], parts[1])) {
      const v1::Resource* r = desired_.Find(Key{v1::ENDPOINT_SLICE, parts[0], slice});
      if (r == nullptr) continue;
      for (const v1::Endpoint& e : r->endpoint_slice().endpoints()) {
        for (const std::string& addr : e.addresses()) {
          std::string name = absl::StrCat(slice, "/", e.hostname().empty() ? addr : e.hostname());
          if (!e.node_name().empty()) absl::StrAppend(&name, " on node ", e.node_name());
          names->endpoint_names[absl::StrCat(parts[0], "/", parts[1], " ", addr)] = std::move(name);
        }
      }
    }
  }
  return names;
}

absl::StatusOr<v1::GetRulesetResponse> WriteEngine::Ruleset(const v1::GetRulesetRequest& req) const {
  if (req.kernel() && !req.service().empty()) {
    return absl::InvalidArgumentError("kernel: compares the whole table only; leave service empty");
  }
  v1::GetRulesetResponse resp;
  std::unique_ptr<dp::InstalledRuleset> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (req.service().empty()) {
      resp.set_text(dp_->Installed());
      if (req.kernel()) snapshot = dp_->Snapshot();
    } else {
      resp.set_text(dp_->InstalledService(
          absl::StrCat(req.namespace_().empty() ? kDefaultNamespace : req.namespace_(), "/", req.service())));
    }
    resp.set_table(dp_->Table());
  }
  if (req.kernel()) {
    if (absl::Status s = CompareWithKernel(snapshot.get(), &resp); !s.ok()) return s;
  }
  return resp;
}

absl::Status WriteEngine::StreamRuleset(bool kernel,
                                        const std::function<bool(const v1::GetRulesetResponse&)>& send) const {
  std::unique_ptr<dp::InstalledRuleset> snapshot;
  v1::GetRulesetResponse first;
  {
    absl::MutexLock lock(&mu_);
    snapshot = dp_->Snapshot();
    first.set_table(dp_->Table());
  }
  if (kernel) {
    if (absl::Status s = CompareWithKernel(snapshot.get(), &first); !s.ok()) return s;
  }
  if (snapshot == nullptr) {  // nothing committed yet: one empty piece
    send(first);
    return absl::OkStatus();
  }
  bool sent = false;
  snapshot->Render([&](absl::string_view piece) {
    v1::GetRulesetResponse r;
    if (!sent) r = first;
    sent = true;
    r.set_text(std::string(piece));
    return send(r);
  });
  return absl::OkStatus();
}

absl::StatusOr<v1::GetCountersResponse> WriteEngine::Counters(
    const std::function<bool(const std::string& ns, const std::string& service)>& keep) const {
  v1::GetCountersResponse out;
  out.set_enabled(options_.node.counters);
  if (!options_.node.counters) return out;
  out.set_endpoint_counters(options_.node.endpoint_counters);
  // The dataplane reads the kernel on a socket of its own: no lock here.
  absl::StatusOr<std::vector<dp::PortConnections>> ports =
      dp_->ReadCounters([&keep](absl::string_view ns, absl::string_view service) {
        return keep(std::string(ns), std::string(service));
      });
  if (absl::IsUnimplemented(ports.status())) {
    out.set_enabled(false);
    return out;
  }
  if (!ports.ok()) return ports.status();
  for (const dp::PortConnections& p : *ports) {
    if (!keep(p.ns, p.service)) continue;
    v1::PortCounter* c = out.add_ports();
    c->set_namespace_(p.ns);
    c->set_service(p.service);
    c->set_protocol(p.proto == dp::L4Proto::kUdp    ? v1::UDP
                    : p.proto == dp::L4Proto::kSctp ? v1::SCTP
                                                    : v1::TCP);
    c->set_port(p.port);
    c->set_connections(p.connections);
    for (const dp::EndpointConnections& e : p.endpoints) {
      v1::EndpointCounter* ec = c->add_endpoints();
      ec->set_address(e.addr.ToString());
      ec->set_port(e.port);
      ec->set_connections(e.connections);
    }
  }
  return out;
}

v1::StatusResponse WriteEngine::Status() const {
  v1::StatusResponse resp;
  absl::MutexLock lock(&mu_);
  resp.set_version(NFTPROXY_VERSION);
  resp.set_revision(desired_.revision());
  resp.set_node_name(options_.node_name);
  for (const auto& [key, r] : desired_.state().objects) {
    if (key.kind == v1::SERVICE) resp.set_services(resp.services() + 1);
    if (key.kind == v1::ENDPOINT_SLICE) resp.set_endpoint_slices(resp.endpoint_slices() + 1);
    if (key.kind == v1::WORKLOAD) resp.set_workloads(resp.workloads() + 1);
  }
  if (last_sync_ != absl::InfinitePast()) {
    SetTime(resp.mutable_last_sync_time(), last_sync_);
    const int64_t ns = absl::ToInt64Nanoseconds(last_sync_duration_);
    resp.mutable_last_sync_duration()->set_seconds(ns / 1000000000);
    resp.mutable_last_sync_duration()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  resp.set_last_error(last_error_);
  if (options_.shared != nullptr) {
    resp.set_shared_store(options_.shared->Describe());
    if (shared_pos_) resp.set_shared_log_seq(shared_pos_->seq);
    absl::MutexLock shared_lock(&shared_mu_);
    resp.set_shared_store_error(shared_error_);
    if (!shared_error_.empty()) SetTime(resp.mutable_shared_store_error_time(), shared_error_since_);
  }
  absl::MutexLock drift_lock(&drift_mu_);
  resp.set_drift_repairs(drift_repairs_);
  resp.set_last_drift(last_drift_);
  if (last_drift_time_ != absl::InfinitePast()) SetTime(resp.mutable_last_drift_time(), last_drift_time_);
  if (last_error_time_ != absl::InfinitePast()) SetTime(resp.mutable_last_error_time(), last_error_time_);
  return resp;
}

absl::StatusOr<std::shared_ptr<WatchCursor>> WriteEngine::OpenWatch(const v1::WatchRequest& req,
                                                                     std::function<void()> wake) {
  // The initial state in pages smaller than List's: each open stream holds
  // one page until it is sent.
  constexpr size_t kWatchPageItems = 100;
  constexpr size_t kWatchPageBytes = 1 << 20;
  const v1::Kind kind = req.kinds_size() == 1 ? static_cast<v1::Kind>(req.kinds(0)) : v1::KIND_UNSPECIFIED;
  auto page = [this, kind, ns = req.namespace_()](std::optional<Key>* after, std::vector<v1::WatchEvent>* events) {
    absl::MutexLock lock(&mu_);
    const uint64_t revision = desired_.revision();
    *after = ListPage(desired_.state(), kind, ns, after->has_value() ? &**after : nullptr, kWatchPageItems,
                      kWatchPageBytes, [&](const Key&, const v1::Resource& r) {
                        v1::WatchEvent& e = events->emplace_back();
                        e.set_type(v1::WatchEvent::UPSERT);
                        *e.mutable_resource() = r;
                        e.set_revision(revision);
                      });
  };
  return watch_.Open(req, std::move(page), std::move(wake));
}

absl::Status WriteEngine::Watch(const v1::WatchRequest& req, const std::function<bool()>& cancelled,
                                const std::function<bool(const v1::WatchEvent&)>& send) {
  absl::Mutex mu;
  bool woken = false;
  absl::StatusOr<std::shared_ptr<WatchCursor>> cursor = OpenWatch(req, [&mu, &woken] {
    absl::MutexLock lock(&mu);
    woken = true;
  });
  if (!cursor.ok()) return cursor.status();
  const absl::Status gone = absl::CancelledError("the client went away");
  absl::Status result;
  std::vector<WatchItem> items;
  for (;;) {
    items.clear();
    if (absl::Status s = (*cursor)->Next(&items); !s.ok()) {
      result = s;
      break;
    }
    if (items.empty()) {
      absl::MutexLock lock(&mu);
      while (!woken) {
        // (Cancelled, it still takes what was published before it stops.)
        if (cancelled() && (*cursor)->CaughtUp()) break;
        mu.AwaitWithTimeout(absl::Condition(&woken), absl::Milliseconds(200));
      }
      if (!woken) {
        result = gone;
        break;
      }
      woken = false;
      continue;
    }
    bool stop = false;
    for (const WatchItem& item : items) {
      v1::WatchEvent e;
      if (!e.ParseFromString(*item.bytes) || !send(e)) {
        stop = true;
        break;
      }
    }
    if (stop || cancelled()) {
      result = gone;
      break;
    }
  }
  (*cursor)->Close();
  return result;
}

// The shared log (options_.shared).

namespace {

// Entries read at once while following the log.
constexpr size_t kLogPage = 64;

}  // namespace

absl::Status WriteEngine::SharedStoreError(const absl::Status& s) const {
  absl::Status out(s.code(), absl::StrCat("the shared state (", options_.shared->Describe(),
                                          ") cannot be written; this node keeps serving its last state: ",
                                          s.message()));
  // An empty detail: the server answered (a client tells this UNAVAILABLE
  // from not reaching the server).
  SetErrorDetail(&out, v1::ErrorDetail());
  return out;
}

absl::Status WriteEngine::AppendLocked(Write* w, const std::vector<Key>& changed) {
  if (!shared_pos_) {
    absl::Status s = absl::UnavailableError(absl::StrCat(
        "the shared state (", options_.shared->Describe(),
        ") has not been read since this server started; writes wait until it is (see `nftproxy status`)"));
    SetErrorDetail(&s, v1::ErrorDetail());
    return s;
  }
  Change change;
  change.reserve(changed.size());
  for (const Key& k : changed) {
    const v1::Resource* r = desired_.Find(k);
    change.emplace_back(k, r != nullptr ? std::optional<v1::Resource>(*r) : std::nullopt);
  }
  const std::string bytes = EncodeChange(change);
  DiscardLater(std::move(change));
  absl::StatusOr<int64_t> rev = options_.shared->Append(*shared_pos_, bytes);
  w->phases.Mark("shared log");
  if (!rev.ok()) {
    if (absl::IsAborted(rev.status())) {
      w->lost_race = true;
      return rev.status();
    }
    return SharedStoreError(rev.status());
  }
  shared_pos_ = LogPosition{shared_pos_->seq + 1, *rev};
  for (const Key& k : changed) {
    if (v1::Resource* r = desired_.FindMutable(k)) MutableMetaOf(r)->set_resource_version(static_cast<uint64_t>(*rev));
  }
  desired_.set_revision(static_cast<uint64_t>(*rev));
  return absl::OkStatus();
}

absl::Status WriteEngine::ApplyChangeLocked(Change change, int64_t revision) {
  Write w(Txn(&desired_), absl::Now());
  w.arrived = w.now;
  w.replay = true;
  w.replay_revision = revision;
  w.source = "shared log";
  const size_t size = change.size();
  for (auto& [key, r] : change) {
    if (!r.has_value() && desired_.Find(key) == nullptr) continue;
    if (!w.txn.Claim(key)) continue;
    w.txn.Put(key, std::move(r));
    w.any_change = true;
  }
  uint64_t rev = 0;
  absl::Status s = FinishLocked(&w, false, &rev, nullptr);
  LogWrite("Follow", w.source, size, false, w, s);
  DiscardLater(std::move(w));
  return s;
}

absl::Status WriteEngine::ApplyEntriesLocked(const std::vector<LogEntry>& entries) {
  for (const LogEntry& e : entries) {
    if (!shared_pos_) return absl::FailedPreconditionError("the shared log's position is not known");
    if (e.position.seq <= shared_pos_->seq) continue;  // this node's own, or applied already
    if (e.position.seq != shared_pos_->seq + 1) break;  // read before a write of ours: read again
    absl::StatusOr<Change> change = DecodeChange(e.change, e.position.revision);
    if (!change.ok()) {
      return absl::Status(change.status().code(),
                          absl::StrCat("entry ", e.position.seq, ": ", change.status().message()));
    }
    if (absl::Status s = ApplyChangeLocked(std::move(*change), e.position.revision); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("applying entry ", e.position.seq, " (revision ",
                                                 e.position.revision, ") of ", options_.shared->Describe(), ": ",
                                                 s.message()));
    }
    shared_pos_ = e.position;
  }
  return absl::OkStatus();
}

absl::Status WriteEngine::CatchUpLocked() {
  if (!shared_pos_) return absl::UnavailableError("the shared state has not been read yet");
  for (;;) {
    int64_t read_at = 0;
    absl::StatusOr<std::vector<LogEntry>> entries = options_.shared->ReadAfter(*shared_pos_, kLogPage, &read_at);
    if (absl::IsOutOfRange(entries.status())) {
      // Behind the log's base: the follower reads it whole; until then this
      // node cannot write.
      return absl::UnavailableError(absl::StrCat(entries.status().message(), "; this node reads it again, retry"));
    }
    if (!entries.ok()) return entries.status();
    if (entries->empty()) return absl::OkStatus();
    if (absl::Status s = ApplyEntriesLocked(*entries); !s.ok()) return s;
  }
}

absl::StatusOr<int64_t> WriteEngine::FollowSharedLog() {
  if (options_.shared == nullptr) return absl::FailedPreconditionError("no shared log");
  absl::StatusOr<int64_t> out = FollowSharedLogOnce();
  NoteSharedStore(out.status());
  return out;
}

absl::StatusOr<int64_t> WriteEngine::FollowSharedLogOnce() {
  std::optional<LogPosition> pos;
  {
    absl::MutexLock lock(&mu_);
    pos = shared_pos_;
  }
  int64_t read_at = 0;
  if (pos) {
    for (;;) {
      absl::StatusOr<std::vector<LogEntry>> entries = options_.shared->ReadAfter(*pos, kLogPage, &read_at);
      if (absl::IsOutOfRange(entries.status())) {
        log::Info("this node is behind the shared log's base: reading it whole",
                  {{"store", options_.shared->Describe()}, {"error", std::string(entries.status().message())}});
        break;
      }
      if (!entries.ok()) return entries.status();
      if (entries->empty()) return read_at;
      absl::MutexLock lock(&mu_);
      // Entries this node's own writes moved past meanwhile are skipped; each
      // round moves the position on, or reads from a newer one.
      if (absl::Status s = ApplyEntriesLocked(*entries); !s.ok()) return s;
      pos = shared_pos_;
    }
  }
  // Start-up, or behind the base: the base and every entry after it folded
  // into one state (entries are immutable and numbered, and every page is
  // read at the base's revision), then one commit of its difference from
  // this node's state (the cache, at start-up).
  read_at = 0;
  std::map<Key, v1::Resource> objects;
  LogPosition at;
  absl::StatusOr<std::optional<LogEntry>> base = options_.shared->ReadBase(&read_at);
  if (!base.ok()) return base.status();
  if (base->has_value()) {
    absl::StatusOr<std::map<Key, v1::Resource>> state = DecodeState((*base)->change);
    if (!state.ok()) return state.status();
    objects = std::move(*state);
    at = (*base)->position;
  }
  for (;;) {
    absl::StatusOr<std::vector<LogEntry>> entries = options_.shared->ReadAfter(at, kLogPage, &read_at);
    if (!entries.ok()) return entries.status();
    for (const LogEntry& e : *entries) {
      if (e.position.seq != at.seq + 1) {
        return absl::DataLossError(absl::StrCat(options_.shared->Describe(), ": entry ", e.position.seq,
                                                " follows entry ", at.seq));
      }
      absl::StatusOr<Change> change = DecodeChange(e.change, e.position.revision);
      if (!change.ok()) return change.status();
      FoldChange(std::move(*change), &objects);
      at = e.position;
    }
    if (entries->empty()) break;
  }
  absl::MutexLock lock(&mu_);
  if (at.seq == 0 && !desired_.state().objects.empty()) return SeedSharedLogLocked();
  if (shared_pos_ && shared_pos_->seq > at.seq) {
    // This node's own write got ahead of the fold meanwhile: follow on.
    return read_at;
  }
  Change diff;
  const auto& cached = desired_.state().objects;
  for (auto& [key, r] : objects) {
    auto it = cached.find(key);
    if (it == cached.end() || !google::protobuf::util::MessageDifferencer::Equals(it->second, r)) {
      diff.emplace_back(key, std::move(r));
    }
  }
  for (const auto& [key, r] : cached) {
    if (objects.count(key) == 0) diff.emplace_back(key, std::nullopt);
  }
  log::Info("read the shared state", {{"store", options_.shared->Describe()},
                                      {"base", absl::StrCat(base->has_value() ? (*base)->position.seq : 0)},
                                      {"entries", absl::StrCat(at.seq)},
                                      {"revision", absl::StrCat(at.revision)},
                                      {"differences from the cached state", absl::StrCat(diff.size())}});
  if (!diff.empty()) {
    if (absl::Status s = ApplyChangeLocked(std::move(diff), at.revision); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("applying the shared state (", options_.shared->Describe(),
                                                 ", revision ", at.revision, "): ", s.message()));
    }
  }
  shared_pos_ = at;
  return read_at;
}

absl::Status WriteEngine::TrimSharedLog() {
  if (options_.shared == nullptr || options_.shared_trim_entries == 0) return absl::OkStatus();
  LogPosition at;
  std::string state;
  {
    absl::MutexLock lock(&mu_);
    // Each node waits for a different number of entries past the base (up
    // to half as many again, by its name), so that one of them trims and
    // the others see the new base on their next read instead of all trimming.
    const uint64_t every = options_.shared_trim_entries;
    const uint64_t spread = std::hash<std::string>()(options_.node_name) % (every / 2 + 1);
    if (!shared_pos_ || shared_pos_->seq < options_.shared->BaseSeq() + every + spread) return absl::OkStatus();
    at = *shared_pos_;
    state = EncodeState(desired_.state().objects);
  }
  absl::Status s = options_.shared->Trim(at, state);
  if (s.ok()) {
    log::Info("trimmed the shared log: its entries up to this node's position are its base now",
              {{"store", options_.shared->Describe()},
               {"entry", absl::StrCat(at.seq)},
               {"state bytes", absl::StrCat(state.size())}});
  }
  return absl::IsFailedPrecondition(s) ? absl::OkStatus() : s;
}

absl::StatusOr<int64_t> WriteEngine::SeedSharedLogLocked() {
  // An empty log and a non-empty cache: a node moving to etcd, a new
  // --etcd-prefix, or an etcd that lost its data. Taking the log as the
  // truth would delete every cached service from this node's kernel; the
  // cache becomes the log's first entry instead (guarded: if another node
  // wrote first, this one reads again and follows that).
  Change seed;
  seed.reserve(desired_.state().objects.size());
  for (const auto& [key, r] : desired_.state().objects) seed.emplace_back(key, r);
  const size_t size = seed.size();
  const std::string bytes = EncodeChange(seed);
  absl::StatusOr<int64_t> rev = options_.shared->Append(LogPosition{}, bytes);
  if (!rev.ok()) {
    if (absl::IsAborted(rev.status())) {
      return absl::AbortedError(absl::StrCat(options_.shared->Describe(),
                                             ": another node wrote the first entry first; reading it again"));
    }
    return rev.status();
  }
  log::Warning("the shared log was empty: wrote this node's cached state as its first entry",
               {{"store", options_.shared->Describe()},
                {"resources", absl::StrCat(size)},
                {"revision", absl::StrCat(*rev)}});
  // The same objects, now at the entry's revision (resourceVersions).
  if (absl::Status s = ApplyChangeLocked(std::move(seed), *rev); !s.ok()) return s;
  shared_pos_ = LogPosition{1, *rev};
  return *rev;
}

void WriteEngine::NoteSharedStore(const absl::Status& s) {
  absl::MutexLock lock(&shared_mu_);
  if (s.ok()) {
    if (!shared_error_.empty()) log::Info("following the shared state again", {});
    shared_error_.clear();
    return;
  }
  if (shared_error_.empty()) shared_error_since_ = absl::Now();
  shared_error_ = std::string(s.message());
}

std::optional<LogPosition> WriteEngine::SharedPosition() const {
  absl::MutexLock lock(&mu_);
  return shared_pos_;
}

}  // namespace nftproxy::server
