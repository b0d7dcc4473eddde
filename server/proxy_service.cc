#include "server/proxy_service.h"

#include <iostream>
#include <memory>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/convert.h"
#include "common/parallel.h"
#include "server/validate.h"
#include "server/wire.h"

namespace nftproxy::server {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// The wall time of each phase of one write, for the slow-write log.
class Phases {
 public:
  Phases() : start_(absl::Now()), last_(start_) {}
  // The time since the previous mark was spent in `phase`.
  void Mark(const char* phase) {
    const absl::Time now = absl::Now();
    Add(phase, now - last_);
    last_ = now;
  }
  // Like Mark, the dataplane's call split into its own phases.
  void MarkDataplane(const dp::ApplyResult& r) {
    const absl::Time now = absl::Now();
    Add("compile", r.compile);
    Add("batch", r.batch);
    Add("kernel", r.kernel);
    Add("dataplane other", (now - last_) - r.compile - r.batch - r.kernel);
    last_ = now;
  }
  absl::Duration Total() const { return absl::Now() - start_; }
  // "examine 12.1ms, stage 30ms, ..."
  std::string Describe() const {
    std::string out;
    for (const auto& [phase, d] : phases_) {
      if (d <= absl::ZeroDuration()) continue;
      absl::StrAppend(&out, out.empty() ? "" : ", ", phase, " ", absl::FormatDuration(absl::Trunc(d, absl::Microseconds(100))));
    }
    return out;
  }

 private:
  void Add(const char* phase, absl::Duration d) {
    for (auto& [p, total] : phases_) {
      if (p == phase) {
        total += d;
        return;
      }
    }
    phases_.emplace_back(phase, d);
  }

  absl::Time start_, last_;
  std::vector<std::pair<const char*, absl::Duration>> phases_;
};

// What a first pass over a request learns about one upsert without changing
// the state, so that it can run on several threads. A resource sent as the
// same bytes as the stored one is known at once (`known`) and never parsed;
// any other is parsed, compared by what it says (UserBytes) and, when it
// differs, validated on its own. The checks against the stored resource
// (source, version, owner) are made here too: the stored resource a later,
// sequential pass sees is the same unless the key appears twice, which that
// pass refuses first.
struct Incoming {
  absl::string_view wire;  // its bytes in the request
  absl::Status parsed;
  Key key;
  std::string source;    // metadata.source as sent
  uint64_t version = 0;  // metadata.resourceVersion as sent
  bool known = false;
  bool same = false;
  std::unique_ptr<v1::Resource> resource;  // null when known; as stored when it is to be
  std::string user_bytes;
  std::string wire_copy;  // `wire`, owned, when the resource is to be stored
  const v1::Resource* stored = nullptr;
  absl::Status checked;  // source, version and owner
  absl::Status valid;    // ValidateResource, when not the same
};

// A write being staged in place; the caller rolls `txn` back unless the
// kernel took it.
struct Write {
  Txn txn;
  absl::Time now;
  bool any_change = false;
  size_t changed = 0;  // keys changed, known once staged
  Phases phases;
  std::vector<Incoming> incoming;  // the request's upserts
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

// Requests at least this large are examined on several threads, and
// commits changing at least this many keys record themselves on another
// thread while the kernel commits.
constexpr size_t kParallelResources = 512;
constexpr size_t kParallelKeys = 256;

// For a resource that will be stored, Examine also fills in what the
// server assigns (namespace, owner, the write's revision, timestamps) and
// copies its bytes: work that would otherwise wait for the sequential pass.
std::vector<Incoming> Examine(const std::vector<absl::string_view>& items, absl::string_view field,
                              const std::string& source, const Desired& d, absl::Time now) {
  std::vector<Incoming> out(items.size());
  ParallelFor(out.size(), kParallelResources, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      Incoming& in = out[i];
      in.wire = items[i];
      if (std::optional<Desired::WireMatch> match = d.MatchWire(in.wire)) {
        in.key = *match->key;
        in.stored = match->resource;
        in.source = match->wire->source;
        in.version = match->wire->version;
        in.known = in.same = true;
      } else {
        in.resource = std::make_unique<v1::Resource>();
        if (!in.resource->ParseFromArray(in.wire.data(), static_cast<int>(in.wire.size()))) {
          in.parsed = absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: not a valid Resource message"));
          continue;
        }
        const v1::ObjectMeta& m = MetaOf(*in.resource);
        in.key = KeyOf(*in.resource);
        in.source = m.source();
        in.version = m.resource_version();
        in.user_bytes = UserBytes(in.resource.get());
        const std::string* stored = d.UserBytesOf(in.key);
        in.same = stored != nullptr && *stored == in.user_bytes;
        if (!in.same) in.valid = ValidateResource(*in.resource);
        in.stored = d.Find(in.key);
      }
      if (!in.source.empty() && !source.empty() && in.source != source) {
        in.checked = absl::InvalidArgumentError(absl::StrCat(Describe(in.key), ": metadata.source: \"", in.source,
                                                             "\" differs from the request's source \"", source, "\""));
      } else if (auto s = CheckVersion(in.key, in.version, in.stored); !s.ok()) {
        in.checked = s;
      } else {
        // The owner check also makes an equal user part mean an equal
        // resource: the source is the one part UserBytes leaves out that is
        // not assigned.
        in.checked = CheckOwner(in.key, in.stored, in.source.empty() ? source : in.source);
      }
      if (!in.same && in.valid.ok() && in.checked.ok()) {
        v1::ObjectMeta* m = MutableMetaOf(in.resource.get());
        m->set_namespace_(in.key.ns);
        m->set_source(in.source.empty() ? source : in.source);
        m->set_resource_version(d.revision() + 1);
        if (in.stored) {
          *m->mutable_create_time() = MetaOf(*in.stored).create_time();
        } else {
          SetTime(m->mutable_create_time(), now);
        }
        SetTime(m->mutable_update_time(), now);
        in.wire_copy = std::string(in.wire);
      }
    }
  });
  return out;
}

// Stages the upsert that Examine described in `in`, written by `source`;
// returns "created", "configured" or "unchanged". An unchanged resource is
// neither copied nor validated again (it was valid when stored).
absl::StatusOr<std::string> StageUpsert(Incoming& in, const std::string& source, Write* w) {
  if (!in.parsed.ok()) return in.parsed;
  const Key& key = in.key;
  if (!w->txn.Claim(key)) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), ": appears twice in one request"));
  }
  if (!in.checked.ok()) return in.checked;
  if (in.stored && in.same) {
    // Next time these bytes need no parsing.
    if (!in.known) w->txn.desired().SetWire(key, Wire{std::string(in.wire), in.source, in.version});
    return std::string("unchanged");
  }
  if (!in.valid.ok()) return in.valid;
  // Examine prepared the resource as it is stored.
  w->any_change = true;
  const std::string outcome = in.stored ? "configured" : "created";
  w->txn.Put(key, std::move(*in.resource), std::move(in.user_bytes), Wire{std::move(in.wire_copy), in.source, in.version});
  return outcome;
}

// Stages the deletion of `key` by `source`.
absl::Status StageDelete(const Key& key, uint64_t resource_version, const std::string& source, Write* w) {
  if (key.kind == v1::KIND_UNSPECIFIED) return absl::InvalidArgumentError("deletes[].kind: required");
  if (!w->txn.Claim(key)) {
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

absl::Status ProxyService::ApplyAllLocked(const Desired& d, Phases* phases) {
  const absl::Time start = absl::Now();
  dp::ApplyResult result;
  dp::Model model = BuildModel(d, options_.node_name, options_.node);
  if (phases != nullptr) phases->Mark("model");
  absl::Status s = dp_->Apply(model, &result);
  if (phases != nullptr) phases->MarkDataplane(result);
  DiscardLater(std::move(model));
  NoteSyncLocked(start, s);
  if (s.ok()) dp_full_ = true;
  return s;
}

void ProxyService::NoteSyncLocked(absl::Time start, const absl::Status& s) {
  last_sync_ = absl::Now();
  last_sync_duration_ = last_sync_ - start;
  last_error_ = s.ok() ? "" : std::string(s.message());
}

absl::Status ProxyService::FinishLocked(Write* w, bool dry_run, uint64_t* revision,
                                        const std::function<void()>& report) {
  if (!w->any_change) {
    if (report) report();
    *revision = desired_.revision();
    return absl::OkStatus();
  }
  absl::Status s = CommitLocked(w, dry_run, report);
  if (!s.ok() || dry_run) {
    w->txn.Rollback();
    *revision = desired_.revision();
    return s;
  }
  *revision = desired_.revision();
  return absl::OkStatus();
}

absl::Status ProxyService::CommitLocked(Write* w, bool dry_run, const std::function<void()>& report) {
  Txn& txn = w->txn;
  const std::vector<Key> changed = txn.Keys();
  w->changed = changed.size();
  if (auto s = ValidateChange(desired_, changed, Rules()); !s.ok()) return s;
  w->phases.Mark("validate");
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
  w->phases.Mark("model");
  if (dry_run) {
    if (report) report();
    return absl::OkStatus();
  }
  desired_.set_revision(desired_.revision() + 1);
  absl::Status s;
  auto commit = [&] {
    if (!dp_full_) {
      // Nothing committed yet in this run: the first commit is the whole state.
      s = ApplyAllLocked(desired_, &w->phases);
      return;
    }
    const absl::Time start = absl::Now();
    dp::ApplyResult result;
    s = dp_->Update(change, &result);
    w->phases.MarkDataplane(result);
    NoteSyncLocked(start, s);
  };
  // What follows a commit only reads the state: the record for the state
  // directory, the Watch events and the caller's report. For a large change
  // it is prepared on another thread while the kernel commits, and dropped
  // if the kernel refuses the change.
  StateStore::Pending pending;
  std::vector<v1::WatchEvent> events;
  auto prepare = [&] {
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
  if (!s.ok()) return s;
  w->phases.Mark("record");
  if (options_.store != nullptr) {
    // The kernel already holds the change; a failed save only affects the
    // next restart, so it is reported in Status rather than failing the call.
    if (auto saved = options_.store->Publish(std::move(pending)); !saved.ok()) last_error_ = std::string(saved.message());
  }
  log_.Append(std::move(events));
  committed_.SignalAll();
  w->phases.Mark("record");
  return absl::OkStatus();
}

void ProxyService::LogWrite(const char* method, const std::string& source, size_t resources, const Write& w,
                            const absl::Status& s) const {
  const absl::Duration total = w.phases.Total();
  if (total < options_.log_writes_over) return;
  std::cerr << absl::StrFormat("nftproxy: %s from source %s: %d resources, %d changed, revision %d: %s in %s (%s)\n",
                               method, SourceName(source), resources, w.changed, desired_.revision(),
                               s.ok() ? "ok" : absl::StatusCodeToString(s.code()),
                               absl::FormatDuration(absl::Trunc(total, absl::Microseconds(100))), w.phases.Describe());
}

absl::Status ProxyService::DoApply(v1::ApplyRequest req, v1::ApplyResponse* resp) {
  return ApplyBytes(req.SerializeAsString(), resp);
}

absl::Status ProxyService::DoSync(v1::SyncRequest req, v1::SyncResponse* resp) {
  return SyncBytes(req.SerializeAsString(), resp);
}

namespace {

// Splits a serialized `type` into the bytes of each element of its field
// `field` (the resources) and the rest, parsed into *req.
template <typename Request>
absl::Status SplitRequest(absl::string_view bytes, int field, const char* type,
                          std::vector<absl::string_view>* items, Request* req) {
  std::string rest;
  if (auto s = SplitField(bytes, field, type, items, &rest); !s.ok()) return s;
  if (!req->ParseFromString(rest)) return absl::InvalidArgumentError(absl::StrCat(type, ": not a valid protobuf message"));
  return absl::OkStatus();
}

}  // namespace

absl::Status ProxyService::RunWrite(const char* method, const std::string& source, size_t resources,
                                    const std::function<absl::Status(Write*)>& body) {
  absl::MutexLock lock(&mu_);
  Write w{Txn(&desired_), absl::Now()};
  absl::Status s = body(&w);
  LogWrite(method, source, resources, w, s);
  // The request's parsed resources and the undo log: freed off the reply's path.
  DiscardLater(std::move(w));
  return s;
}

absl::Status ProxyService::ApplyBytes(absl::string_view bytes, v1::ApplyResponse* resp) {
  std::vector<absl::string_view> upserts;
  v1::ApplyRequest req;  // everything but the upserts
  if (auto s = SplitRequest(bytes, v1::ApplyRequest::kUpsertsFieldNumber, "ApplyRequest", &upserts, &req); !s.ok()) {
    return s;
  }
  return RunWrite("Apply", req.source(), upserts.size() + req.deletes_size(),
                  [&](Write* w) { return ApplyLocked(req, upserts, w, resp); });
}

absl::Status ProxyService::ApplyLocked(const v1::ApplyRequest& req, const std::vector<absl::string_view>& upserts,
                                       Write* w, v1::ApplyResponse* resp) {
  std::vector<Incoming>& incoming = w->incoming = Examine(upserts, "upserts", req.source(), desired_, w->now);
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
    resp->add_outcomes("deleted");
  }
  for (Incoming& in : incoming) {
    absl::StatusOr<std::string> outcome = StageUpsert(in, req.source(), w);
    if (!outcome.ok()) return fail(outcome.status());
    resp->add_outcomes(*outcome);
  }
  w->phases.Mark("stage");
  // The caller gets each upserted resource as stored.
  auto report = [&] {
    resp->mutable_applied()->Reserve(static_cast<int>(incoming.size()));
    for (const Incoming& in : incoming) *resp->add_applied() = *desired_.Find(in.key);
  };
  uint64_t revision = 0;
  absl::Status s = FinishLocked(w, req.dry_run(), &revision, report);
  resp->set_revision(revision);
  return s;
}

absl::Status ProxyService::SyncBytes(absl::string_view bytes, v1::SyncResponse* resp) {
  std::vector<absl::string_view> resources;
  v1::SyncRequest req;  // everything but the resources
  if (auto s = SplitRequest(bytes, v1::SyncRequest::kResourcesFieldNumber, "SyncRequest", &resources, &req); !s.ok()) {
    return s;
  }
  if (req.source().empty()) {
    return absl::InvalidArgumentError("source: required (the name of the owner whose resources are replaced)");
  }
  return RunWrite("Sync", req.source(), resources.size(),
                  [&](Write* w) { return SyncLocked(req, resources, w, resp); });
}

absl::Status ProxyService::SyncLocked(const v1::SyncRequest& req, const std::vector<absl::string_view>& resources,
                                      Write* w, v1::SyncResponse* resp) {
  std::vector<Incoming>& incoming = w->incoming = Examine(resources, "resources", req.source(), desired_, w->now);
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
      if (MetaOf(r).source() == req.source() && keep.count(key) == 0) drop.emplace_back(key, MetaOf(r).resource_version());
    }
    for (const auto& [key, version] : drop) {
      if (auto s = StageDelete(key, 0, req.source(), w); !s.ok()) return fail(s);
      *resp->add_deleted() = RefOf(key, version);
    }
  }
  for (Incoming& in : incoming) {
    absl::StatusOr<std::string> outcome = StageUpsert(in, req.source(), w);
    if (!outcome.ok()) return fail(outcome.status());
    if (*outcome == "unchanged") {
      resp->set_unchanged(resp->unchanged() + 1);
      continue;
    }
    const v1::ResourceRef ref = RefOf(in.key, MetaOf(*desired_.Find(in.key)).resource_version());
    *(*outcome == "created" ? resp->add_created() : resp->add_configured()) = ref;
  }
  w->phases.Mark("stage");
  uint64_t revision = 0;
  absl::Status s = FinishLocked(w, req.dry_run(), &revision, nullptr);
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

namespace {

std::string Flatten(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  out.reserve(b.Length());
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

}  // namespace

// Apply and Sync take their requests as bytes (see server/wire.h). They run
// on calls_, not on gRPC's callback threads, since a commit may take
// seconds; the request and reply buffers live until Finish.
template <typename Response>
grpc::ServerUnaryReactor* ProxyService::RunBytes(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                 grpc::ByteBuffer* resp,
                                                 absl::Status (ProxyService::*method)(absl::string_view, Response*)) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  calls_.Post([this, reactor, req, resp, method] {
    Response out;
    absl::Status s = (this->*method)(Flatten(*req), &out);
    if (s.ok()) {
      bool own_buffer = false;
      grpc::Status g = grpc::SerializationTraits<Response>::Serialize(out, resp, &own_buffer);
      reactor->Finish(g);
      return;
    }
    reactor->Finish(ToGrpc(s));
  });
  return reactor;
}

grpc::ServerUnaryReactor* ProxyService::Apply(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                              grpc::ByteBuffer* resp) {
  return RunBytes<v1::ApplyResponse>(ctx, req, resp, &ProxyService::ApplyBytes);
}

grpc::ServerUnaryReactor* ProxyService::Sync(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                             grpc::ByteBuffer* resp) {
  return RunBytes<v1::SyncResponse>(ctx, req, resp, &ProxyService::SyncBytes);
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
  absl::Status s = DoApply(std::move(apply), &out);
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
