#include "server/proxy_service.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "server/convert.h"
#include "server/validate.h"

namespace nftproxy::server {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// A write being staged in place; the caller rolls `txn` back unless the
// kernel took it.
struct Write {
  Txn txn;
  absl::Time now;
  bool any_change = false;
};

namespace {

void SetTime(google::protobuf::Timestamp* ts, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

absl::Status CheckVersion(const Key& key, uint64_t want, const v1::Resource* stored) {
  if (want == 0) return absl::OkStatus();
  const uint64_t have = stored ? MetaOf(*stored).resource_version() : 0;
  if (want != have) {
    return absl::AbortedError(absl::StrCat(Describe(key), ": metadata.resourceVersion: conflict: expected ", want,
                                           ", stored ", have, " (it changed since it was read)"));
  }
  return absl::OkStatus();
}

std::string SourceName(const std::string& source) {
  return source.empty() ? "\"\" (manual)" : absl::StrCat("\"", source, "\"");
}

// A resource is replaced or deleted only by the source that owns it.
absl::Status CheckOwner(const Key& key, const v1::Resource* stored, const std::string& writer) {
  if (stored == nullptr || MetaOf(*stored).source() == writer) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat(
      Describe(key), ": conflict: owned by source ", SourceName(MetaOf(*stored).source()),
      ", and this request is from source ", SourceName(writer),
      " (a source changes only its own resources; to act for the owner, send its name as the source)"));
}

// Whether `in` (as sent by `source`) says what `stored` says, ignoring the
// fields the server assigns or defaults. Compares deterministic
// serializations after giving `stored` the sender's form of those fields
// for a moment: no copy of either resource, which matters when a sync
// re-sends tens of thousands of unchanged ones. `stored` is the state's own
// object; the caller holds the lock, and it is restored before returning.
bool SameUserPart(v1::Resource* stored, const v1::Resource& in, const std::string& source) {
  const v1::ObjectMeta& im = MetaOf(in);
  v1::ObjectMeta* sm = MutableMetaOf(stored);
  // The stored namespace is the key's, which `in` names or leaves default.
  // An empty source in `in` means the request's.
  if (im.source().empty() && sm->source() != source) return false;
  const std::string ns = sm->namespace_(), src = sm->source();
  const uint64_t version = sm->resource_version();
  const bool had_created = sm->has_create_time(), had_updated = sm->has_update_time();
  const google::protobuf::Timestamp created = sm->create_time(), updated = sm->update_time();
  sm->set_namespace_(im.namespace_());
  if (im.source().empty()) sm->clear_source();
  sm->set_resource_version(im.resource_version());
  if (im.has_create_time()) *sm->mutable_create_time() = im.create_time();
  else sm->clear_create_time();
  if (im.has_update_time()) *sm->mutable_update_time() = im.update_time();
  else sm->clear_update_time();
  const bool same = DeterministicBytes(*stored) == DeterministicBytes(in);
  sm->set_namespace_(ns);
  sm->set_source(src);
  sm->set_resource_version(version);
  if (had_created) *sm->mutable_create_time() = created;
  else sm->clear_create_time();
  if (had_updated) *sm->mutable_update_time() = updated;
  else sm->clear_update_time();
  return same;
}

// Stages an upsert written by `source`; returns "created", "configured" or
// "unchanged" and, in *stored_out (when not null), the resource as stored.
absl::StatusOr<std::string> StageUpsert(const v1::Resource& in, const std::string& source, Write* w,
                                        v1::Resource* stored_out) {
  const Key key = KeyOf(in);
  if (w->txn.Touched(key)) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), ": appears twice in one request"));
  }
  const v1::ObjectMeta& im = MetaOf(in);
  if (!im.source().empty() && !source.empty() && im.source() != source) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), ": metadata.source: \"", im.source(),
                                                   "\" differs from the request's source \"", source, "\""));
  }
  v1::Resource* stored = w->txn.desired().FindMutable(key);
  const std::string& owner = im.source().empty() ? source : im.source();
  if (auto s = CheckVersion(key, im.resource_version(), stored); !s.ok()) return s;
  if (auto s = CheckOwner(key, stored, owner); !s.ok()) return s;
  // A resource identical to a stored one was valid when it was stored.
  if (stored && SameUserPart(stored, in, source)) {
    w->txn.Touch(key);
    if (stored_out != nullptr) *stored_out = *stored;
    return std::string("unchanged");
  }
  if (auto s = ValidateResource(in); !s.ok()) return s;
  v1::Resource r = in;
  v1::ObjectMeta* m = MutableMetaOf(&r);
  m->set_namespace_(key.ns);
  m->set_source(owner);
  w->any_change = true;
  m->set_resource_version(w->txn.desired().revision() + 1);
  if (stored) {
    *m->mutable_create_time() = MetaOf(*stored).create_time();
  } else {
    SetTime(m->mutable_create_time(), w->now);
  }
  SetTime(m->mutable_update_time(), w->now);
  const std::string outcome = stored ? "configured" : "created";
  if (stored_out != nullptr) *stored_out = r;
  w->txn.Put(key, std::move(r));
  return outcome;
}

// Stages the deletion of `key` by `source`.
absl::Status StageDelete(const Key& key, uint64_t resource_version, const std::string& source, Write* w) {
  if (key.kind == v1::KIND_UNSPECIFIED) return absl::InvalidArgumentError("deletes[].kind: required");
  if (w->txn.Touched(key)) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), ": appears twice in one request"));
  }
  const v1::Resource* stored = w->txn.desired().Find(key);
  if (stored == nullptr) return absl::NotFoundError(absl::StrCat(Describe(key), " not found"));
  if (auto s = CheckVersion(key, resource_version, stored); !s.ok()) return s;
  if (auto s = CheckOwner(key, stored, source); !s.ok()) return s;
  w->txn.Put(key, std::nullopt);
  w->any_change = true;
  return absl::OkStatus();
}

v1::ResourceRef RefOf(const Key& key, uint64_t version) {
  v1::ResourceRef ref;
  ref.set_kind(key.kind);
  ref.set_namespace_(key.ns);
  ref.set_name(key.name);
  ref.set_resource_version(version);
  return ref;
}

bool WatchWants(const v1::WatchRequest& req, const v1::WatchEvent& e) {
  if (e.type() == v1::WatchEvent::BOOKMARK) return true;
  const Key key = KeyOf(e.resource());
  if (!req.namespace_().empty() && key.ns != req.namespace_()) return false;
  if (req.kinds().empty()) return true;
  for (int k : req.kinds()) {
    if (k == key.kind) return true;
  }
  return false;
}

}  // namespace

absl::Status ProxyService::Restore(State state) {
  absl::MutexLock lock(&mu_);
  std::vector<Key> all;
  for (const auto& [k, r] : state.objects) {
    if (auto s = ValidateResource(r); !s.ok()) return s;
    all.push_back(k);
  }
  Desired restored(std::move(state));
  if (auto s = ValidateChange(restored, all, Rules()); !s.ok()) return s;
  if (auto s = ApplyAllLocked(restored); !s.ok()) return s;
  desired_ = std::move(restored);
  if (options_.store != nullptr) {
    // Start this run's journal from a snapshot of what was restored.
    if (auto saved = options_.store->Snapshot(desired_.state()); !saved.ok()) last_error_ = std::string(saved.message());
  }
  // Watchers can resume from the restored revision on, not from before.
  log_.Reset(desired_.revision());
  return absl::OkStatus();
}

StateRules ProxyService::Rules() const { return StateRules{options_.node_port_min, options_.node_port_max}; }

absl::Status ProxyService::ApplyAllLocked(const Desired& d) {
  const absl::Time start = absl::Now();
  dp::ApplyResult result;
  absl::Status s = dp_->Apply(BuildModel(d, options_.node_name, options_.node), &result);
  NoteSyncLocked(start, s);
  if (s.ok()) dp_full_ = true;
  return s;
}

void ProxyService::NoteSyncLocked(absl::Time start, const absl::Status& s) {
  last_sync_ = absl::Now();
  last_sync_duration_ = last_sync_ - start;
  last_error_ = s.ok() ? "" : std::string(s.message());
}

absl::Status ProxyService::FinishLocked(Write* w, bool dry_run, uint64_t* revision) {
  if (!w->any_change) {
    *revision = desired_.revision();
    return absl::OkStatus();
  }
  absl::Status s = CommitLocked(w->txn, dry_run);
  if (!s.ok() || dry_run) {
    w->txn.Rollback();
    *revision = desired_.revision();
    return s;
  }
  *revision = desired_.revision();
  return absl::OkStatus();
}

absl::Status ProxyService::CommitLocked(Txn& txn, bool dry_run) {
  const std::vector<Key> changed = txn.Keys();
  if (auto s = ValidateChange(desired_, changed, Rules()); !s.ok()) return s;
  // Only the services this write can have changed are rebuilt and sent
  // (before the first full commit, everything is).
  dp::ModelChange change;
  std::set<std::pair<std::string, std::string>> affected;
  if (dp_full_ || dry_run) affected = AffectedServices(txn);
  for (const auto& [ns, name] : affected) {
    if (auto svc = BuildService(desired_, ns, name, options_.node_name)) {
      change.upserts.push_back(std::move(*svc));
    } else {
      change.removes.push_back(absl::StrCat(ns, "/", name));
    }
  }
  if (dry_run) return absl::OkStatus();
  desired_.set_revision(desired_.revision() + 1);
  if (!dp_full_) {
    // Nothing committed yet in this run: the first commit is the whole state.
    if (auto s = ApplyAllLocked(desired_); !s.ok()) return s;
  } else {
    const absl::Time start = absl::Now();
    dp::ApplyResult result;
    absl::Status s = dp_->Update(change, &result);
    NoteSyncLocked(start, s);
    if (!s.ok()) return s;
  }
  PersistLocked(changed);
  log_.Append(ChangeEvents(txn));
  committed_.SignalAll();
  return absl::OkStatus();
}

void ProxyService::PersistLocked(const std::vector<Key>& changed) {
  if (options_.store == nullptr) return;
  // The kernel already holds the change; a failed save only affects the
  // next restart, so it is reported in Status rather than failing the call.
  if (auto saved = options_.store->Record(desired_.state(), changed); !saved.ok()) {
    last_error_ = std::string(saved.message());
  }
}

absl::Status ProxyService::DoApply(const v1::ApplyRequest& req, v1::ApplyResponse* resp) {
  absl::MutexLock lock(&mu_);
  Write w{Txn(&desired_), absl::Now()};
  auto fail = [&w](absl::Status s) {
    w.txn.Rollback();
    return s;
  };
  for (const v1::ResourceRef& ref : req.deletes()) {
    const Key key = KeyOf(ref);
    if (auto s = StageDelete(key, ref.resource_version(), req.source(), &w); !s.ok()) return fail(s);
    v1::ResourceRef* d = resp->add_deleted();
    *d = ref;
    d->set_namespace_(key.ns);
    resp->add_outcomes("deleted");
  }
  for (const v1::Resource& r : req.upserts()) {
    absl::StatusOr<std::string> outcome = StageUpsert(r, req.source(), &w, resp->add_applied());
    if (!outcome.ok()) return fail(outcome.status());
    resp->add_outcomes(*outcome);
  }
  uint64_t revision = 0;
  absl::Status s = FinishLocked(&w, req.dry_run(), &revision);
  resp->set_revision(revision);
  return s;
}

absl::Status ProxyService::DoSync(const v1::SyncRequest& req, v1::SyncResponse* resp) {
  if (req.source().empty()) {
    return absl::InvalidArgumentError("source: required (the name of the owner whose resources are replaced)");
  }
  absl::MutexLock lock(&mu_);
  Write w{Txn(&desired_), absl::Now()};
  auto fail = [&w](absl::Status s) {
    w.txn.Rollback();
    return s;
  };
  std::set<Key> keep;
  for (const v1::Resource& r : req.resources()) keep.insert(KeyOf(r));
  // Deletes first, so that a Sync may move an address from a dropped
  // service to a new one.
  std::vector<std::pair<Key, uint64_t>> drop;
  for (const auto& [key, r] : desired_.state().objects) {
    if (MetaOf(r).source() == req.source() && keep.count(key) == 0) drop.emplace_back(key, MetaOf(r).resource_version());
  }
  for (const auto& [key, version] : drop) {
    if (auto s = StageDelete(key, 0, req.source(), &w); !s.ok()) return fail(s);
    *resp->add_deleted() = RefOf(key, version);
  }
  for (const v1::Resource& r : req.resources()) {
    const Key key = KeyOf(r);
    absl::StatusOr<std::string> outcome = StageUpsert(r, req.source(), &w, nullptr);
    if (!outcome.ok()) return fail(outcome.status());
    const v1::ResourceRef ref = RefOf(key, MetaOf(*desired_.Find(key)).resource_version());
    if (*outcome == "created") *resp->add_created() = ref;
    if (*outcome == "configured") *resp->add_configured() = ref;
    if (*outcome == "unchanged") resp->set_unchanged(resp->unchanged() + 1);
  }
  uint64_t revision = 0;
  absl::Status s = FinishLocked(&w, req.dry_run(), &revision);
  resp->set_revision(revision);
  return s;
}

absl::Status ProxyService::DoWatch(const v1::WatchRequest& req, const std::function<bool()>& cancelled,
                                   const std::function<bool(const v1::WatchEvent&)>& send) {
  const absl::Status gone = absl::CancelledError("the client went away");
  std::vector<v1::WatchEvent> batch;
  uint64_t cursor = 0;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("the server is shutting down");
    if (req.since_revision() > desired_.revision()) {
      return absl::OutOfRangeError(absl::StrCat("revision ", req.since_revision(), " is newer than the server's (",
                                                desired_.revision(), "); list the resources again and resume from the revision that returns"));
    }
    if (req.since_revision() == 0) {
      for (const auto& [key, r] : desired_.state().objects) {
        v1::WatchEvent e;
        e.set_type(v1::WatchEvent::UPSERT);
        *e.mutable_resource() = r;
        e.set_revision(desired_.revision());
        if (WatchWants(req, e)) batch.push_back(std::move(e));
      }
    } else if (auto s = log_.Since(req.since_revision(), &batch); !s.ok()) {
      return s;
    }
    cursor = desired_.revision();
  }
  v1::WatchEvent bookmark;
  bookmark.set_type(v1::WatchEvent::BOOKMARK);
  bookmark.set_revision(cursor);
  batch.push_back(bookmark);
  for (;;) {
    for (const v1::WatchEvent& e : batch) {
      if (WatchWants(req, e) && !send(e)) return gone;
    }
    batch.clear();
    absl::MutexLock lock(&mu_);
    while (desired_.revision() == cursor && !shutting_down_) {
      if (cancelled()) return gone;
      committed_.WaitWithTimeout(&mu_, absl::Milliseconds(200));
    }
    if (shutting_down_) {
      return absl::UnavailableError(absl::StrCat("the server is shutting down; resume from revision ", cursor));
    }
    if (auto s = log_.Since(cursor, &batch); !s.ok()) {
      return absl::OutOfRangeError(absl::StrCat("this watch fell behind and missed changes: ", s.message()));
    }
    cursor = desired_.revision();
  }
}

void ProxyService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  committed_.SignalAll();
}

grpc::Status ProxyService::Apply(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) {
  v1::ApplyResponse out;
  absl::Status s = DoApply(*req, &out);
  if (s.ok()) *resp = std::move(out);
  return ToGrpc(s);
}

grpc::Status ProxyService::Get(grpc::ServerContext*, const v1::GetRequest* req, v1::Resource* resp) {
  const Key key = KeyOf(req->ref());
  absl::MutexLock lock(&mu_);
  auto it = desired_.state().objects.find(key);
  if (it == desired_.state().objects.end()) return ToGrpc(absl::NotFoundError(absl::StrCat(Describe(key), " not found")));
  *resp = it->second;
  return grpc::Status::OK;
}

grpc::Status ProxyService::List(grpc::ServerContext*, const v1::ListRequest* req, v1::ListResponse* resp) {
  absl::MutexLock lock(&mu_);
  for (const auto& [key, r] : desired_.state().objects) {
    if (req->kind() != v1::KIND_UNSPECIFIED && key.kind != req->kind()) continue;
    if (!req->namespace_().empty() && key.ns != req->namespace_()) continue;
    *resp->add_resources() = r;
  }
  resp->set_revision(desired_.revision());
  return grpc::Status::OK;
}

grpc::Status ProxyService::Delete(grpc::ServerContext*, const v1::DeleteRequest* req, v1::DeleteResponse* resp) {
  v1::ApplyRequest apply;
  *apply.mutable_deletes() = req->refs();
  apply.set_source(req->source());
  v1::ApplyResponse out;
  absl::Status s = DoApply(apply, &out);
  if (!s.ok()) return ToGrpc(s);
  *resp->mutable_deleted() = out.deleted();
  resp->set_revision(out.revision());
  return grpc::Status::OK;
}

grpc::Status ProxyService::GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*, v1::GetRulesetResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_text(dp_->Installed());
  resp->set_table(dp_->Table());
  return grpc::Status::OK;
}

grpc::Status ProxyService::Sync(grpc::ServerContext*, const v1::SyncRequest* req, v1::SyncResponse* resp) {
  v1::SyncResponse out;
  absl::Status s = DoSync(*req, &out);
  if (s.ok()) *resp = std::move(out);
  return ToGrpc(s);
}

grpc::Status ProxyService::Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                                 grpc::ServerWriter<v1::WatchEvent>* writer) {
  return ToGrpc(DoWatch(*req, [ctx] { return ctx->IsCancelled(); },
                        [writer](const v1::WatchEvent& e) { return writer->Write(e); }));
}

grpc::Status ProxyService::Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_version(NFTPROXY_VERSION);
  resp->set_revision(desired_.revision());
  resp->set_node_name(options_.node_name);
  for (const auto& [key, r] : desired_.state().objects) {
    if (key.kind == v1::SERVICE) resp->set_services(resp->services() + 1);
    if (key.kind == v1::ENDPOINT_SLICE) resp->set_endpoint_slices(resp->endpoint_slices() + 1);
    if (key.kind == v1::WORKLOAD) resp->set_workloads(resp->workloads() + 1);
  }
  if (last_sync_ != absl::InfinitePast()) {
    SetTime(resp->mutable_last_sync_time(), last_sync_);
    const int64_t ns = absl::ToInt64Nanoseconds(last_sync_duration_);
    resp->mutable_last_sync_duration()->set_seconds(ns / 1000000000);
    resp->mutable_last_sync_duration()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  resp->set_last_error(last_error_);
  return grpc::Status::OK;
}

}  // namespace nftproxy::server
