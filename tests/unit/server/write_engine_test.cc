// The write engine against a fake dataplane: all-or-nothing writes, endpoint
// resolution, versions.
#include "server/write_engine.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/errors.h"
#include "dataplane/ruleset.h"

namespace nftproxy::server {
namespace {

class FakeDataplane : public dp::Dataplane {
 public:
  absl::Status Apply(const dp::Model& model, dp::ApplyResult* r) override {
    ++applies;
    if (!fail.ok()) return fail;
    last = model;
    committed = true;
    return absl::OkStatus();
  }
  // Applies the change to `last`, which stays sorted by key like a full model.
  absl::Status Update(const dp::ModelChange& change, dp::ApplyResult* r) override {
    ++applies;
    ++updates;
    if (!fail.ok()) return fail;
    if (!committed) return absl::FailedPreconditionError("Update before Apply");
    std::map<std::string, dp::Service> by_key;
    for (const dp::Service& s : last.services) by_key.emplace(s.Key(), s);
    for (const std::string& k : change.removes) by_key.erase(k);
    for (const dp::Service& s : change.upserts) by_key.insert_or_assign(s.Key(), s);
    last.services.clear();
    for (auto& [k, s] : by_key) last.services.push_back(std::move(s));
    return absl::OkStatus();
  }
  std::string Installed() const override { return committed ? dp::Render(dp::Compile(last, "t")) : ""; }
  std::unique_ptr<dp::InstalledRuleset> Snapshot() const override {
    if (!committed) return nullptr;
    // The text at the time of the snapshot, handed out in two pieces.
    class Text final : public dp::InstalledRuleset {
     public:
      explicit Text(std::string t) : text_(std::move(t)) {}
      void Render(const std::function<bool(absl::string_view)>& sink) const override {
        const size_t half = text_.size() / 2;
        if (sink(absl::string_view(text_).substr(0, half))) sink(absl::string_view(text_).substr(half));
      }

     private:
      std::string text_;
    };
    return std::make_unique<Text>(Installed());
  }
  std::string InstalledService(const std::string& key) const override {
    dp::Model one;
    for (const dp::Service& s : last.services) {
      if (s.Key() == key) one.services.push_back(s);
    }
    return committed ? dp::Render(dp::Compile(one, "t")) : "";
  }
  std::string Table() const override { return "inet t"; }
  absl::StatusOr<std::vector<dp::PortConnections>> ReadCounters(const ServiceFilter&) const override {
    return counters;
  }

  std::vector<dp::PortConnections> counters;  // what ReadCounters gives
  int applies = 0;  // Apply and Update calls
  int updates = 0;
  bool committed = false;
  absl::Status fail;
  dp::Model last;
};

v1::ApplyRequest Req(const std::string& text) {
  v1::ApplyRequest r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

const char kWeb[] = R"(
upserts { service { metadata { name: "web" } spec { cluster_ips: "198.19.0.10"
  ports { name: "http" port: 80 target_port_name: "http" } ports { name: "admin" port: 81 target_port: 9090 } } } }
upserts { endpoint_slice { metadata { name: "web-1" } service_name: "web"
  ports { name: "http" port: 8080 }
  endpoints { addresses: "198.18.10.2" }
  endpoints { addresses: "198.18.11.2" conditions { ready: false } }
  endpoints { addresses: "198.18.12.2" weight: 3 } } }
)";

TEST(WriteEngine, ResolvesEndpointsAndPorts) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  ASSERT_EQ(fake.last.services.size(), 1u);
  const dp::Service& s = fake.last.services[0];
  ASSERT_EQ(s.ports.size(), 2u);
  ASSERT_EQ(s.ports[0].backends.size(), 2u);  // the not-ready one is left out
  EXPECT_EQ(s.ports[0].backends[0].addr.ToString(), "198.18.10.2");
  EXPECT_EQ(s.ports[0].backends[0].port, 8080);
  EXPECT_EQ(s.ports[0].backends[1].weight, 3u);
  EXPECT_EQ(s.ports[1].backends[0].port, 9090);
  EXPECT_EQ(resp.outcomes(0), "created");
  EXPECT_EQ(resp.revision(), 1u);
}

TEST(WriteEngine, InvalidBatchChangesNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  // A good service together with a bad one: neither lands.
  absl::Status s = svc.Apply(Req(R"(
    upserts { service { metadata { name: "ok" } spec { cluster_ips: "198.19.0.11" ports { port: 80 } } } }
    upserts { service { metadata { name: "bad" } spec { cluster_ips: "198.19.0.12" ports { port: 70000 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.applies, applies);
  v1::ListResponse list;
  v1::ListRequest all;
  list = *svc.List(all);
  EXPECT_EQ(list.resources_size(), 2);
}

TEST(WriteEngine, KernelFailureChangesNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  fake.fail = dp::BlameService(absl::FailedPreconditionError("service default/x: kernel refused the change"),
                                dp::ServiceOwner("default/x"));
  absl::Status s = svc.Apply(Req(R"(upserts { service { metadata { name: "x" } spec { cluster_ips: "198.19.0.11" ports { port: 80 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  // The kernel's refusal points at the resource.
  std::optional<v1::ErrorDetail> d = ErrorDetailOf(s);
  ASSERT_TRUE(d.has_value()) << s;
  EXPECT_EQ(KeyOf(d->resource()), (Key{v1::SERVICE, "default", "x"}));
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::SERVICE);
  get.mutable_ref()->set_name("x");
  EXPECT_EQ(svc.Get(get.ref()).status().code(), absl::StatusCode::kNotFound);
}

TEST(WriteEngine, UnchangedReapplyDoesNoKernelWork) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  v1::ApplyResponse again;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &again).ok());
  EXPECT_EQ(fake.applies, applies);
  EXPECT_EQ(again.outcomes(0), "unchanged");
  EXPECT_EQ(again.revision(), resp.revision());
}

// A state store whose saves fail while `fail` is set (a full disk, EIO
// from fdatasync).
class FlakyStore : public StateStore {
 public:
  Pending Prepare(const State& state, const std::vector<Key>&) const override {
    Pending p;
    p.revision = state.revision;
    return p;
  }
  absl::Status Publish(Pending) override { return Result(); }
  void Abandon(const Pending&) override {}
  absl::Status Snapshot(const State&) override {
    ++snapshots;
    return Result();
  }
  absl::Status Result() const { return fail ? absl::UnavailableError("fdatasync state.journal: EIO") : absl::OkStatus(); }

  bool fail = false;
  int snapshots = 0;
};

TEST(WriteEngine, AFailedSaveIsTheCallersErrorAndARepeatSaves) {
  FakeDataplane fake;
  FlakyStore store;
  EngineOptions options;
  options.store = &store;
  WriteEngine svc(&fake, options);
  store.fail = true;
  v1::ApplyResponse resp;
  absl::Status s = svc.Apply(Req(kWeb), &resp);
  // The caller learns that a restart would lose it ...
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("applied and serving, but saving it failed (fdatasync state.journal: EIO)"),
            absl::string_view::npos)
      << s;
  // ... but the kernel holds it, so it is not rolled back.
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::SERVICE);
  get.mutable_ref()->set_name("web");
  EXPECT_TRUE(svc.Get(get.ref()).ok());
  EXPECT_EQ(fake.last.services.size(), 1u);
  EXPECT_NE(svc.Status().last_error().find("saving it failed"), std::string::npos);
  // A repeat while the disk still fails: still DATA_LOSS.
  EXPECT_EQ(svc.Apply(Req(kWeb), &resp).code(), absl::StatusCode::kDataLoss);
  // Fixed: the repeat (nothing to change) saves the whole state once.
  store.fail = false;
  const int snapshots = store.snapshots;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  EXPECT_EQ(store.snapshots, snapshots + 1);
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  EXPECT_EQ(store.snapshots, snapshots + 1) << "saved again although nothing was unsaved";
}

TEST(WriteEngine, StaleResourceVersionConflicts) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  absl::Status s = svc.Apply(Req(R"(upserts { service { metadata { name: "web" resource_version: 99 }
      spec { cluster_ips: "198.19.0.10" ports { port: 80 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_NE(std::string(s.message()).find("metadata.resourceVersion"), std::string::npos);
}

TEST(WriteEngine, DeleteMissingIsNotFoundAndDryRunChangesNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  EXPECT_EQ(svc.Apply(Req(R"(deletes { kind: SERVICE name: "nope" })"), &resp).code(), absl::StatusCode::kNotFound);
  v1::ApplyRequest dry = Req(kWeb);
  dry.set_dry_run(true);
  ASSERT_TRUE(svc.Apply(dry, &resp).ok());
  EXPECT_EQ(fake.applies, 0);
}

TEST(WriteEngine, ListIsPaginatedInKeyOrder) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyRequest req;
  for (int ns = 0; ns < 3; ++ns) {
    for (int i = 0; i < 7; ++i) {
      v1::Resource* r = req.add_upserts();
      r->mutable_workload()->mutable_metadata()->set_namespace_(absl::StrCat("ns", ns));
      r->mutable_workload()->mutable_metadata()->set_name(absl::StrCat("w", i));
      r->mutable_workload()->add_addresses(absl::StrCat("198.18.", ns, ".", i + 1));
    }
  }
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(req, &resp).ok());
  for (const std::string ns : {"", "ns1"}) {
    v1::ListRequest list;
    list.set_namespace_(ns);
    list.set_page_size(4);
    std::vector<std::string> seen;
    int pages = 0;
    do {
      absl::StatusOr<v1::ListResponse> page = svc.List(list);
      ASSERT_TRUE(page.ok()) << page.status();
      EXPECT_LE(page->resources_size(), 4);
      for (const v1::Resource& r : page->resources()) seen.push_back(Describe(KeyOf(r)));
      list.set_page_token(page->next_page_token());
      ++pages;
    } while (!list.page_token().empty());
    EXPECT_EQ(seen.size(), ns.empty() ? 21u : 7u);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());
    EXPECT_EQ(pages, ns.empty() ? 6 : 2);
  }
  // A token is tied to its kind and namespace, and must be one the server made.
  v1::ListRequest list;
  list.set_page_size(1);
  absl::StatusOr<v1::ListResponse> page = svc.List(list);
  ASSERT_TRUE(page.ok());
  list.set_page_token(page->next_page_token());
  list.set_namespace_("ns2");
  EXPECT_EQ(svc.List(list).status().code(), absl::StatusCode::kInvalidArgument);
  list.set_page_token("garbage");
  EXPECT_EQ(svc.List(list).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WriteEngine, BriefApplyRepliesWithReferences) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyRequest req = Req(kWeb);
  req.set_brief(true);
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(req, &resp).ok());
  EXPECT_EQ(resp.applied_size(), 0);
  ASSERT_EQ(resp.applied_refs_size(), 2);
  EXPECT_EQ(KeyOf(resp.applied_refs(0)), (Key{v1::SERVICE, "default", "web"}));
  EXPECT_EQ(KeyOf(resp.applied_refs(1)), (Key{v1::ENDPOINT_SLICE, "default", "web-1"}));
  EXPECT_EQ(resp.applied_refs(0).resource_version(), resp.revision());
  EXPECT_EQ(resp.outcomes(0), "created");
}

TEST(WriteEngine, StreamedRulesetIsTheRulesetInPieces) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  std::vector<v1::GetRulesetResponse> pieces;
  auto collect = [&pieces](const v1::GetRulesetResponse& r) {
    pieces.push_back(r);
    return true;
  };
  svc.StreamRuleset(false, collect);  // nothing committed: one empty piece naming the table
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].table(), "inet t");
  EXPECT_EQ(pieces[0].text(), "");
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  pieces.clear();
  svc.StreamRuleset(false, collect);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].table(), "inet t");
  EXPECT_EQ(pieces[1].table(), "");
  EXPECT_EQ(pieces[0].text() + pieces[1].text(), svc.Ruleset(v1::GetRulesetRequest())->text());
  // A reader that goes away stops the stream.
  int calls = 0;
  svc.StreamRuleset(false, [&calls](const v1::GetRulesetResponse&) { return ++calls < 1; });
  EXPECT_EQ(calls, 1);
}

TEST(WriteEngine, SpelledOutDefaultsAreTheSameResource) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  v1::ApplyRequest spelled = Req(kWeb);
  v1::ServiceSpec* spec = spelled.mutable_upserts(0)->mutable_service()->mutable_spec();
  spec->set_load_balancing(v1::ServiceSpec::RANDOM);
  spec->set_type(v1::ServiceSpec::CLUSTER_IP);
  spec->mutable_ports(0)->set_protocol(v1::TCP);
  v1::ApplyResponse again;
  ASSERT_TRUE(svc.Apply(spelled, &again).ok());
  EXPECT_EQ(again.outcomes(0), "unchanged");
  EXPECT_EQ(fake.applies, applies);
}

TEST(WriteEngine, DeleteHonoursDryRun) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  v1::DeleteRequest del;
  del.add_refs()->set_kind(v1::SERVICE);
  del.mutable_refs(0)->set_name("web");
  del.set_dry_run(true);
  v1::DeleteResponse out;
  ASSERT_TRUE(svc.Delete(del, &out).ok());
  EXPECT_EQ(out.deleted_size(), 1);
  EXPECT_EQ(fake.applies, applies);
  EXPECT_TRUE(svc.Get(RefOf(Key{v1::SERVICE, "default", "web"})).ok());
  del.set_dry_run(false);
  ASSERT_TRUE(svc.Delete(del, &out).ok());
  EXPECT_EQ(svc.Get(RefOf(Key{v1::SERVICE, "default", "web"})).status().code(), absl::StatusCode::kNotFound);
}

TEST(WriteEngine, RefusedWritesNameTheirResourceAndAreTheLastError) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  EXPECT_TRUE(svc.Status().last_error().empty());
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  v1::ApplyRequest stale = Req(kWeb);
  stale.mutable_upserts(0)->mutable_service()->mutable_metadata()->set_resource_version(99);
  absl::Status s = svc.Apply(stale, &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  std::optional<v1::ErrorDetail> d = ErrorDetailOf(s);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(KeyOf(d->resource()), (Key{v1::SERVICE, "default", "web"}));
  EXPECT_EQ(d->field(), "metadata.resourceVersion");
  const v1::StatusResponse st = svc.Status();
  EXPECT_EQ(st.last_error(), absl::StrCat("Apply: ", s.message()));
  EXPECT_TRUE(st.has_last_error_time());
  // It stays the last error after a write that succeeds.
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  EXPECT_EQ(svc.Status().last_error(), st.last_error());
}

TEST(WriteEngine, SelectorPicksWorkloads) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(R"(
    upserts { service { metadata { name: "fe" } spec { cluster_ips: "198.19.0.20"
      selector { key: "app" value: "webapp" } selector { key: "role" value: "frontend" }
      ports { name: "http" port: 80 target_port_name: "http" } } } }
    upserts { workload { metadata { name: "a" labels { key: "app" value: "webapp" } labels { key: "role" value: "frontend" } }
      addresses: "198.18.20.2" ports { name: "http" port: 8080 } } }
    upserts { workload { metadata { name: "b" labels { key: "app" value: "webapp" } labels { key: "role" value: "backend" } }
      addresses: "198.18.20.3" ports { name: "http" port: 8080 } } })"), &resp).ok());
  ASSERT_EQ(fake.last.services.size(), 1u);
  ASSERT_EQ(fake.last.services[0].ports[0].backends.size(), 1u);
  EXPECT_EQ(fake.last.services[0].ports[0].backends[0].addr.ToString(), "198.18.20.2");
}


// ---- ownership, Sync, Watch ---------------------------------------------------

v1::SyncRequest SyncReq(const std::string& text) {
  v1::SyncRequest r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

std::string Svc(const std::string& name, const std::string& vip) {
  return "service { metadata { name: \"" + name + "\" } spec { cluster_ips: \"" + vip + "\" ports { port: 80 } } }";
}

std::vector<std::string> Names(WriteEngine& svc, v1::Kind kind = v1::SERVICE) {
  v1::ListRequest req;
  req.set_kind(kind);
  v1::ListResponse list;
  list = *svc.List(req);
  std::vector<std::string> out;
  for (const v1::Resource& r : list.resources()) out.push_back(MetaOf(r).source() + ":" + MetaOf(r).name());
  return out;
}

TEST(Sync, TwoSourcesNeverDisturbEachOther) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::SyncResponse resp;
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("a1", "198.19.1.1") + " } resources { " +
                                 Svc("a2", "198.19.1.2") + " }"), &resp).ok());
  EXPECT_EQ(resp.created_size(), 2);
  EXPECT_EQ(resp.revision(), 1u);
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'b' resources { " + Svc("b1", "198.19.2.1") + " }"), &resp).ok());
  EXPECT_EQ(Names(svc), (std::vector<std::string>{"a:a1", "a:a2", "b:b1"}));
  // a drops a1, keeps a2 unchanged, adds a3: b's service is untouched.
  v1::SyncResponse again;
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("a2", "198.19.1.2") + " } resources { " +
                                 Svc("a3", "198.19.1.3") + " }"), &again).ok());
  EXPECT_EQ(Names(svc), (std::vector<std::string>{"a:a2", "a:a3", "b:b1"}));
  ASSERT_EQ(again.deleted_size(), 1);
  EXPECT_EQ(again.deleted(0).name(), "a1");
  ASSERT_EQ(again.created_size(), 1);
  EXPECT_EQ(again.created(0).name(), "a3");
  EXPECT_EQ(again.unchanged(), 1u);
  EXPECT_EQ(again.revision(), 3u);
  // The dataplane got all three sources' services.
  EXPECT_EQ(fake.last.services.size(), 3u);
  // b syncing nothing removes only b's.
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'b'"), &resp).ok());
  EXPECT_EQ(Names(svc), (std::vector<std::string>{"a:a2", "a:a3"}));
}

TEST(Sync, UnchangedSyncDoesNoKernelWork) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  const std::string req = "source: 'a' resources { " + Svc("a1", "198.19.1.1") + " }";
  v1::SyncResponse first, second;
  ASSERT_TRUE(svc.Sync(SyncReq(req), &first).ok());
  const int applies = fake.applies;
  ASSERT_TRUE(svc.Sync(SyncReq(req), &second).ok());
  EXPECT_EQ(fake.applies, applies);
  EXPECT_EQ(second.revision(), first.revision());
  EXPECT_EQ(second.unchanged(), 1u);
}

TEST(Sync, ConflictWithAnotherSourceIsRefusedAndChangesNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::SyncResponse resp;
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("shared", "198.19.1.1") + " }"), &resp).ok());
  const int applies = fake.applies;
  // b claims a's service, along with one of its own: neither lands.
  absl::Status s = svc.Sync(SyncReq("source: 'b' resources { " + Svc("b1", "198.19.2.1") + " } resources { " +
                                      Svc("shared", "198.19.1.9") + " }"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_NE(std::string(s.message()).find("service default/shared"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("\"a\""), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("\"b\""), std::string::npos) << s;
  EXPECT_EQ(fake.applies, applies);
  EXPECT_EQ(Names(svc), (std::vector<std::string>{"a:shared"}));
  // Manual Apply (source "") over a's resource: refused the same way.
  v1::ApplyResponse ar;
  s = svc.Apply(Req("upserts { " + Svc("shared", "198.19.1.9") + " }"), &ar);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_NE(std::string(s.message()).find("(manual)"), std::string::npos) << s;
  s = svc.Apply(Req("deletes { kind: SERVICE name: 'shared' }"), &ar);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  // Naming the owner explicitly is allowed.
  ASSERT_TRUE(svc.Apply(Req("source: 'a' upserts { " + Svc("shared", "198.19.1.9") + " }"), &ar).ok());
  EXPECT_EQ(ar.outcomes(0), "configured");
  ASSERT_TRUE(svc.Apply(Req("source: 'a' deletes { kind: SERVICE name: 'shared' }"), &ar).ok());
  EXPECT_TRUE(Names(svc).empty());
}

TEST(Sync, RequestErrors) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::SyncResponse resp;
  EXPECT_EQ(svc.Sync(SyncReq("resources { " + Svc("x", "198.19.1.1") + " }"), &resp).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status s = svc.Sync(SyncReq("source: 'a' resources { service { metadata { name: 'x' source: 'other' } "
                                      "spec { cluster_ips: '198.19.1.1' ports { port: 80 } } } }"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("metadata.source"), std::string::npos) << s;
  s = svc.Sync(SyncReq("source: 'a' resources { " + Svc("x", "198.19.1.1") + " } resources { " +
                         Svc("x", "198.19.1.2") + " }"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // A stale resource version is a conflict, as in Apply.
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("x", "198.19.1.1") + " }"), &resp).ok());
  s = svc.Sync(SyncReq("source: 'a' resources { service { metadata { name: 'x' resource_version: 77 } "
                         "spec { cluster_ips: '198.19.1.1' ports { port: 81 } } } }"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(fake.applies, 1);
}

TEST(Sync, DryRunAndKernelFailureChangeNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::SyncResponse resp;
  v1::SyncRequest dry = SyncReq("source: 'a' resources { " + Svc("a1", "198.19.1.1") + " }");
  dry.set_dry_run(true);
  ASSERT_TRUE(svc.Sync(dry, &resp).ok());
  EXPECT_EQ(resp.created_size(), 1);
  EXPECT_EQ(resp.revision(), 0u);
  EXPECT_EQ(fake.applies, 0);
  EXPECT_TRUE(Names(svc).empty());
  fake.fail = absl::FailedPreconditionError("kernel refused the change");
  EXPECT_FALSE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("a1", "198.19.1.1") + " }"), &resp).ok());
  EXPECT_TRUE(Names(svc).empty());
}

// Apply and Sync read their requests as bytes: a resource re-sent as the
// bytes it was stored from is not parsed, but every check still applies.
TEST(Scope, WritesOutsideTheCallersScopeChangeNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  Scope shop{"certificate CN=ci", {Grant{std::set<std::string>{"ci"}, std::set<std::string>{"shop"}}}};
  v1::ApplyResponse resp;
  auto in = [](const std::string& ns, const std::string& name, const std::string& vip) {
    return "upserts { service { metadata { name: \"" + name + "\" namespace: \"" + ns +
           "\" } spec { cluster_ips: \"" + vip + "\" ports { port: 80 } } } }";
  };
  ASSERT_TRUE(svc.Apply(Req("source: 'ci' " + in("shop", "a", "198.19.1.1")), &resp, &shop).ok());
  const int applies = fake.applies;
  // Another namespace, alone or next to an allowed one; another source;
  // a Sync that would delete; a Delete: refused, nothing changed.
  for (const std::string& req : {"source: 'ci' " + in("default", "b", "198.19.1.2"),
                                 "source: 'ci' " + in("shop", "c", "198.19.1.3") + in("web", "d", "198.19.1.4"),
                                 "source: 'other' " + in("shop", "e", "198.19.1.5")}) {
    absl::Status s = svc.Apply(Req(req), &resp, &shop);
    EXPECT_TRUE(absl::IsPermissionDenied(s)) << req << ": " << s;
    EXPECT_NE(s.message().find("certificate CN=ci may not write"), std::string::npos) << s;
  }
  ASSERT_TRUE(svc.Apply(Req("source: 'ci' " + in("web", "w", "198.19.1.6")), &resp).ok());  // unrestricted
  v1::SyncResponse sync;
  EXPECT_TRUE(absl::IsPermissionDenied(svc.Sync(SyncReq("source: 'ci'"), &sync, &shop)));  // would delete web/w
  v1::DeleteRequest del;
  del.set_source("ci");
  del.add_refs()->set_name("w");
  del.mutable_refs(0)->set_namespace_("web");
  del.mutable_refs(0)->set_kind(v1::SERVICE);
  v1::DeleteResponse deleted;
  EXPECT_TRUE(absl::IsPermissionDenied(svc.Delete(del, &deleted, &shop)));
  EXPECT_EQ(fake.applies, applies + 1);  // only the unrestricted write
  EXPECT_EQ(Names(svc), (std::vector<std::string>{"ci:a", "ci:w"}));
  // Re-sending, unchanged, what it may not change changes nothing: allowed.
  EXPECT_TRUE(svc.Apply(Req("source: 'ci' " + in("web", "w", "198.19.1.6")), &resp, &shop).ok());
}

TEST(RequestBytes, ResentBytesAreStillCheckedForOwnerAndVersion) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  auto apply = [&](const std::string& text) {
    resp.Clear();
    return svc.Apply(Req(text), &resp);
  };
  v1::SyncResponse sync;
  const std::string a1 = Svc("a1", "198.19.1.1");
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + a1 + " }"), &sync).ok());
  sync.Clear();
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + a1 + " }"), &sync).ok());
  EXPECT_EQ(sync.unchanged(), 1u);
  // The same bytes from another source, or from the manual one: refused.
  absl::Status s = apply("source: 'b' upserts { " + a1 + " }");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  s = apply("upserts { " + a1 + " }");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  // Bytes naming a resource version: accepted once; sent again after the
  // version moved on, they are stale.
  const std::string v1_bytes = R"(service { metadata { name: "a1" resource_version: 1 }
      spec { cluster_ips: "198.19.1.1" ports { port: 81 } } })";
  ASSERT_TRUE(apply("source: 'a' upserts { " + v1_bytes + " }").ok());
  EXPECT_EQ(resp.outcomes(0), "configured");
  s = apply("source: 'a' upserts { " + v1_bytes + " }");
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  // A source named in the resource must still match the request's.
  const std::string owned = R"(service { metadata { name: "o" source: "a" }
      spec { cluster_ips: "198.19.1.5" ports { port: 80 } } })";
  ASSERT_TRUE(apply("source: 'a' upserts { " + owned + " }").ok());
  ASSERT_TRUE(apply("source: 'a' upserts { " + owned + " }").ok());
  EXPECT_EQ(resp.outcomes(0), "unchanged");
  s = apply("source: 'b' upserts { " + owned + " }");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("metadata.source"), std::string::npos) << s;
}

TEST(RequestBytes, DifferentBytesSayingTheSameAreUnchanged) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("x", "198.19.1.1") + " }"), &resp).ok());
  const int applies = fake.applies;
  // The namespace spelled out, and server-assigned fields sent back as read.
  const std::string spelled = R"(upserts { service { metadata { name: "x" namespace: "default"
      create_time { seconds: 5 } update_time { seconds: 6 } } spec { cluster_ips: "198.19.1.1" ports { port: 80 } } } })";
  for (int i = 0; i < 2; ++i) {
    v1::ApplyResponse again;
    ASSERT_TRUE(svc.Apply(Req(spelled), &again).ok());
    EXPECT_EQ(again.outcomes(0), "unchanged");
    ASSERT_EQ(again.applied_size(), 1);
    EXPECT_EQ(again.applied(0).service().metadata().resource_version(), 1u);
  }
  EXPECT_EQ(fake.applies, applies);
  // A real change is seen, whatever bytes came before.
  v1::ApplyResponse changed;
  ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("x", "198.19.1.2") + " }"), &changed).ok());
  EXPECT_EQ(changed.outcomes(0), "configured");
  EXPECT_EQ(fake.applies, applies + 1);
}

TEST(RequestBytes, MalformedRequestsChangeNothing) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  absl::Status s = svc.Apply(std::string("\x0a\x64short", 7), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("ApplyRequest"), std::string::npos) << s;
  // A good resource, then one that is not a Resource: neither lands.
  v1::SyncRequest good = SyncReq("source: 'a' resources { " + Svc("g", "198.19.1.7") + " }");
  const std::string bytes = good.SerializeAsString() + std::string("\x12\x03\xff\xff\xff", 5);
  v1::SyncResponse sync;
  s = svc.Sync(bytes, &sync);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("resources[1]: not a valid Resource message"), std::string::npos) << s;
  EXPECT_EQ(fake.applies, applies);
  EXPECT_EQ(Names(svc), (std::vector<std::string>{":web"}));
}

// Runs DoWatch on a thread and collects what it sends.
class Watcher {
 public:
  Watcher(WriteEngine* svc, v1::WatchRequest req) {
    thread_ = std::thread([this, svc, req] {
      absl::Status s = svc->Watch(
          req, [this] { return stop_.load(); },
          [this](const v1::WatchEvent& e) {
            absl::MutexLock lock(&mu_);
            events_.push_back(e);
            return !stop_.load();
          });
      absl::MutexLock lock(&mu_);
      result_ = s;
      done_ = true;
    });
  }
  ~Watcher() { Stop(); }

  // Waits until `n` events arrived (or 5 s); returns them.
  std::vector<v1::WatchEvent> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n || done_; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
    return events_;
  }
  absl::Status Finish() {
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return result_;
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string Summary(const std::vector<v1::WatchEvent>& events) {
  std::string out;
  for (const v1::WatchEvent& e : events) {
    out += v1::WatchEvent::Type_Name(e.type()) + "@" + std::to_string(e.revision());
    if (e.type() != v1::WatchEvent::BOOKMARK) out += ":" + std::string(KindName(KindOf(e.resource()))) + "/" + MetaOf(e.resource()).name();
    out += " ";
  }
  return out;
}

TEST(Watch, InitialStateThenEveryChangeInOrder) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse ar;
  ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("one", "198.19.1.1") + " }"), &ar).ok());
  Watcher w(&svc, v1::WatchRequest());
  EXPECT_EQ(Summary(w.WaitFor(2)), "UPSERT@1:service/one BOOKMARK@1 ");
  ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("two", "198.19.1.2") + " }"), &ar).ok());
  ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("two", "198.19.1.2") + " }"), &ar).ok());  // unchanged: no event
  ASSERT_TRUE(svc.Apply(Req("deletes { kind: SERVICE name: 'one' } upserts { " + Svc("three", "198.19.1.3") + " }"), &ar).ok());
  v1::SyncResponse sr;
  ASSERT_TRUE(svc.Sync(SyncReq("source: 'a' resources { " + Svc("four", "198.19.1.4") + " }"), &sr).ok());
  const std::vector<v1::WatchEvent> events = w.WaitFor(6);
  EXPECT_EQ(Summary(events),
            "UPSERT@1:service/one BOOKMARK@1 UPSERT@2:service/two DELETE@3:service/one UPSERT@3:service/three "
            "UPSERT@4:service/four ");
  // A delete carries the resource as it was.
  EXPECT_EQ(events[3].resource().service().spec().cluster_ips(0), "198.19.1.1");
  EXPECT_EQ(events[5].resource().service().metadata().source(), "a");
  w.Stop();
  EXPECT_EQ(w.Finish().code(), absl::StatusCode::kCancelled);
}

TEST(Watch, ResumesFromARevision) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::ApplyResponse ar;
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("s" + std::to_string(i), "198.19.1." + std::to_string(i)) + " }"), &ar).ok());
  }
  v1::WatchRequest req;
  req.set_since_revision(2);
  Watcher w(&svc, req);
  EXPECT_EQ(Summary(w.WaitFor(3)), "UPSERT@3:service/s3 UPSERT@4:service/s4 BOOKMARK@4 ");
  ASSERT_TRUE(svc.Apply(Req("deletes { kind: SERVICE name: 's1' }"), &ar).ok());
  EXPECT_EQ(Summary(w.WaitFor(4)), "UPSERT@3:service/s3 UPSERT@4:service/s4 BOOKMARK@4 DELETE@5:service/s1 ");
  // Resuming from the current revision: just the bookmark.
  req.set_since_revision(5);
  Watcher now(&svc, req);
  EXPECT_EQ(Summary(now.WaitFor(1)), "BOOKMARK@5 ");
}

TEST(Watch, FiltersByKindAndNamespace) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  v1::WatchRequest req;
  req.add_kinds(v1::ENDPOINT_SLICE);
  req.set_namespace_("default");
  Watcher w(&svc, req);
  EXPECT_EQ(Summary(w.WaitFor(1)), "BOOKMARK@0 ");
  v1::ApplyResponse ar;
  ASSERT_TRUE(svc.Apply(Req(kWeb), &ar).ok());
  ASSERT_TRUE(svc.Apply(Req(R"(upserts { endpoint_slice { metadata { namespace: "other" name: "x" } service_name: "x" } })"), &ar).ok());
  ASSERT_TRUE(svc.Apply(Req(R"(upserts { endpoint_slice { metadata { name: "web-2" } service_name: "web" } })"), &ar).ok());
  EXPECT_EQ(Summary(w.WaitFor(3)), "BOOKMARK@0 UPSERT@1:endpointslice/web-1 UPSERT@3:endpointslice/web-2 ");
}

TEST(Watch, TooOldOrFutureRevisionIsOutOfRange) {
  FakeDataplane fake;
  EngineOptions opts;
  opts.watch_log_capacity = 2;
  WriteEngine svc(&fake, opts);
  v1::ApplyResponse ar;
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(svc.Apply(Req("upserts { " + Svc("s" + std::to_string(i), "198.19.1." + std::to_string(i)) + " }"), &ar).ok());
  }
  auto run = [&](uint64_t since) {
    v1::WatchRequest req;
    req.set_since_revision(since);
    return svc.Watch(req, [] { return true; }, [](const v1::WatchEvent&) { return false; });
  };
  absl::Status s = run(1);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_NE(std::string(s.message()).find("list the resources again"), std::string::npos) << s;
  EXPECT_EQ(run(9).code(), absl::StatusCode::kOutOfRange);
  // The last two changes are still there.
  EXPECT_EQ(run(2).code(), absl::StatusCode::kCancelled);
}

TEST(Watch, ShutdownEndsStreams) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  Watcher w(&svc, v1::WatchRequest());
  EXPECT_EQ(Summary(w.WaitFor(1)), "BOOKMARK@0 ");
  const absl::Time start = absl::Now();
  svc.Shutdown();
  absl::Status s = w.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(svc.Watch(v1::WatchRequest(), [] { return false; }, [](const v1::WatchEvent&) { return true; }).code(),
            absl::StatusCode::kUnavailable);
}

TEST(Watch, RestoredStateResumesOnlyFromItsRevision) {
  FakeDataplane fake;
  WriteEngine svc(&fake, {});
  State state;
  state.revision = 7;
  v1::Resource r;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(Svc("old", "198.19.1.1"), &r));
  MutableMetaOf(&r)->set_namespace_("default");
  MutableMetaOf(&r)->set_resource_version(7);
  state.objects[KeyOf(r)] = r;
  ASSERT_TRUE(svc.Restore(state).ok());
  v1::WatchRequest req;
  req.set_since_revision(6);
  EXPECT_EQ(svc.Watch(req, [] { return true; }, [](const v1::WatchEvent&) { return true; }).code(),
            absl::StatusCode::kOutOfRange);
  req.set_since_revision(7);
  Watcher w(&svc, req);
  EXPECT_EQ(Summary(w.WaitFor(1)), "BOOKMARK@7 ");
}

}  // namespace
}  // namespace nftproxy::server

namespace nftproxy::server {
namespace {

// A fake that says every commit changed the kernel, and can hold an Update
// until released.
class CommittingDataplane : public FakeDataplane {
 public:
  absl::Status Apply(const dp::Model& model, dp::ApplyResult* r) override {
    r->changed = true;
    r->full = true;
    r->messages = 40;
    return FakeDataplane::Apply(model, r);
  }
  absl::Status Update(const dp::ModelChange& change, dp::ApplyResult* r) override {
    if (hold) {
      entered.Notify();
      release.WaitForNotification();
    }
    r->changed = true;
    r->messages = 3;
    r->flows_deleted = 2;
    return FakeDataplane::Update(change, r);
  }
  bool hold = false;
  absl::Notification entered, release;
};

TEST(Metrics, TheEngineCountsWritesCommitsAndResources) {
  CommittingDataplane fake;
  Registry registry;
  EngineMetrics m(&registry);
  EngineOptions options;
  options.metrics = &m;
  WriteEngine engine(&fake, options);
  EXPECT_FALSE(engine.Health().ready);
  v1::ApplyResponse resp;
  ASSERT_TRUE(engine.Apply(Req(kWeb), &resp).ok());
  EXPECT_TRUE(engine.Health().ready);
  EXPECT_EQ(m.writes->Value({"Apply", "OK"}), 1);
  EXPECT_EQ(m.write_duration->Count({"Apply"}), 1u);
  for (const char* phase : {"examine", "stage", "validate", "model", "compile", "kernel", "record"}) {
    EXPECT_EQ(m.phase_duration->Count({phase}), 1u) << phase;
  }
  EXPECT_EQ(m.programming_latency->Count({}), 1u);
  EXPECT_EQ(m.commits->Value({"full"}), 1);  // the fake replaced the table (no previous run to adopt)
  EXPECT_EQ(m.commit_messages->Count({}), 1u);
  EXPECT_GT(m.last_commit->Value({}), 1.7e9);
  EXPECT_EQ(m.resources->Value({"service"}), 1);
  EXPECT_EQ(m.resources->Value({"endpointslice"}), 1);
  EXPECT_EQ(m.endpoints->Value({"ready"}), 2);  // one of three is not ready
  EXPECT_EQ(m.endpoints->Value({"serving"}), 2);
  EXPECT_EQ(m.endpoints->Value({"terminating"}), 0);

  // A refused write is counted with its code and changes no gauge.
  EXPECT_FALSE(engine.Apply(Req(R"(upserts { service { metadata { name: "bad" } spec { cluster_ips: "198.19.0.12"
      ports { port: 70000 } } } })"), &resp).ok());
  EXPECT_EQ(m.writes->Value({"Apply", "INVALID_ARGUMENT"}), 1);
  EXPECT_EQ(m.write_duration->Count({"Apply"}), 2u);
  EXPECT_EQ(m.resources->Value({"service"}), 1);

  // An endpoint turns terminating, then the slice goes.
  ASSERT_TRUE(engine.Apply(Req(R"(upserts { endpoint_slice { metadata { name: "web-1" } service_name: "web"
      ports { name: "http" port: 8080 }
      endpoints { addresses: "198.18.10.2" conditions { ready: false serving: true terminating: true } } } })"),
                           &resp).ok());
  EXPECT_EQ(m.endpoints->Value({"ready"}), 0);
  EXPECT_EQ(m.endpoints->Value({"serving"}), 1);
  EXPECT_EQ(m.endpoints->Value({"terminating"}), 1);
  EXPECT_EQ(m.commits->Value({"delta"}), 1);
  EXPECT_EQ(m.flows_deleted->Value({}), 2);
  v1::DeleteRequest del;
  del.add_refs()->CopyFrom(RefOf(Key{v1::ENDPOINT_SLICE, "default", "web-1"}));
  v1::DeleteResponse dresp;
  ASSERT_TRUE(engine.Delete(del, &dresp).ok());
  EXPECT_EQ(m.writes->Value({"Delete", "OK"}), 1);
  EXPECT_EQ(m.resources->Value({"endpointslice"}), 0);
  EXPECT_EQ(m.endpoints->Value({"serving"}), 0);
  EXPECT_EQ(m.endpoints->Value({"terminating"}), 0);
  EXPECT_EQ(m.programming_latency->Count({}), 3u);

  // A dry run is a write, but commits nothing.
  v1::ApplyRequest dry = Req(kWeb);
  dry.set_dry_run(true);
  ASSERT_TRUE(engine.Apply(dry, &resp).ok());
  EXPECT_EQ(m.writes->Value({"Apply", "OK"}), 3);
  EXPECT_EQ(m.commits->Value({"delta"}), 2);
  EXPECT_EQ(m.resources->Value({"endpointslice"}), 0);
}

TEST(Metrics, AWriteUnderWayIsAPendingChange) {
  CommittingDataplane fake;
  WriteEngine engine(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(engine.Apply(Req(kWeb), &resp).ok());
  EXPECT_EQ(engine.Health().oldest_pending, absl::InfiniteFuture());
  const absl::Time updated = engine.Health().last_updated;
  fake.hold = true;
  const absl::Time before = absl::Now();
  std::thread writer([&] {
    v1::ApplyResponse r;
    EXPECT_TRUE(engine.Apply(Req(R"(upserts { service { metadata { name: "two" } spec { cluster_ips: "198.19.0.13"
        ports { port: 80 } } } })"), &r).ok());
  });
  fake.entered.WaitForNotification();
  const HealthState stuck = engine.Health();
  EXPECT_GE(stuck.oldest_pending, before);
  EXPECT_LE(stuck.oldest_pending, absl::Now());
  // /healthz turns 503 once that change is older than the timeout.
  Registry registry;
  HttpRequest req;
  req.method = "GET";
  req.path = req.target = "/healthz";
  EXPECT_EQ(ServeObservability(req, registry, stuck, absl::Seconds(60), absl::Now()).status, 200);
  EXPECT_EQ(ServeObservability(req, registry, stuck, absl::Seconds(60), stuck.oldest_pending + absl::Seconds(61))
                .status,
            503);
  fake.release.Notify();
  writer.join();
  const HealthState after = engine.Health();
  EXPECT_EQ(after.oldest_pending, absl::InfiniteFuture());
  EXPECT_GT(after.last_updated, updated);
}

}  // namespace
}  // namespace nftproxy::server

namespace nftproxy::server {
namespace {

// ---- health-check node ports, through a fake sink ---------------------------

class FakeHealthPorts : public HealthPortSink {
 public:
  absl::Status Prepare(const HealthPortChanges& changes, bool full, bool best_effort) override {
    prepared.push_back({changes, full});
    if (!fail.ok()) return fail;
    pending = PlanHealthPorts(serving, changes, full);
    return absl::OkStatus();
  }
  void Commit() override {
    ++commits;
    if (pending) serving = pending->next;
    pending.reset();
  }
  void Abort() override {
    ++aborts;
    pending.reset();
  }
  std::vector<std::pair<HealthPortChanges, bool>> prepared;
  std::optional<HealthPortPlan> pending;
  std::map<uint16_t, HealthPort> serving;
  int commits = 0, aborts = 0;
  absl::Status fail;
};

const char kLocalLb[] = R"(
upserts { service { metadata { name: "lb" } spec { type: LOAD_BALANCER cluster_ips: "198.19.0.20"
  external_traffic_policy: LOCAL health_check_node_port: 32000 ports { port: 80 node_port: 30080 } } } }
upserts { endpoint_slice { metadata { name: "lb-1" } service_name: "lb"
  endpoints { addresses: "198.18.10.2" node_name: "n1" }
  endpoints { addresses: "198.18.10.3" node_name: "n2" } } }
)";

TEST(WriteEngine, HealthPortsChangeWithinTheWrite) {
  FakeDataplane fake;
  FakeHealthPorts ports;
  EngineOptions options;
  options.node_name = "n1";
  options.health_ports = &ports;
  WriteEngine engine(&fake, options);
  v1::ApplyResponse resp;
  ASSERT_TRUE(engine.Apply(Req(kLocalLb), &resp).ok());
  // The first commit hands over the whole set.
  ASSERT_EQ(ports.prepared.size(), 1u);
  EXPECT_TRUE(ports.prepared[0].second);
  ASSERT_EQ(ports.serving.size(), 1u);
  EXPECT_EQ(ports.serving[32000], (HealthPort{"default", "lb", 32000, 1}));
  // The endpoint moves to n2: only the changed service, counted again.
  ASSERT_TRUE(engine.Apply(Req(R"(upserts { endpoint_slice { metadata { name: "lb-1" } service_name: "lb"
      endpoints { addresses: "198.18.10.2" node_name: "n2" } } })"), &resp).ok());
  ASSERT_EQ(ports.prepared.size(), 2u);
  EXPECT_FALSE(ports.prepared[1].second);
  EXPECT_EQ(ports.prepared[1].first.size(), 1u);
  EXPECT_EQ(ports.serving[32000].local_endpoints, 0);
  // A write the sink refuses (a port in use) changes nothing, kernel included.
  const int applies = fake.applies;
  ports.fail = ResourceError(absl::StatusCode::kFailedPrecondition, Key{v1::SERVICE, "default", "lb"},
                             "spec.healthCheckNodePort", "cannot listen on health check node port 32001: in use");
  std::string moved = kLocalLb;
  moved.replace(moved.find("32000"), 5, "32001");
  absl::Status s = engine.Apply(Req(moved), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("spec.healthCheckNodePort"), std::string::npos) << s.message();
  EXPECT_EQ(fake.applies, applies);
  v1::ResourceRef ref;
  ref.set_kind(v1::SERVICE);
  ref.set_name("lb");
  EXPECT_EQ(engine.Get(ref)->service().spec().health_check_node_port(), 32000u);
  EXPECT_EQ(ports.serving.count(32000), 1u);
  // The kernel refuses: the prepared ports are dropped.
  ports.fail = absl::OkStatus();
  fake.fail = absl::InternalError("kernel says no");
  const int aborts = ports.aborts;
  EXPECT_FALSE(engine.Apply(Req(moved), &resp).ok());
  EXPECT_EQ(ports.aborts, aborts + 1);
  EXPECT_EQ(ports.serving.count(32000), 1u);
  fake.fail = absl::OkStatus();
  ASSERT_TRUE(engine.Apply(Req(moved), &resp).ok());
  EXPECT_EQ(ports.serving.count(32000), 0u);
  EXPECT_EQ(ports.serving.count(32001), 1u);
  // Deleting the service closes its port.
  v1::DeleteRequest del;
  *del.add_refs() = ref;
  v1::DeleteResponse dresp;
  ASSERT_TRUE(engine.Delete(del, &dresp).ok());
  EXPECT_TRUE(ports.serving.empty());
}

TEST(WriteEngine, CountersAreTheKernelsFilteredByTheCaller) {
  FakeDataplane fake;
  fake.counters = {{"default", "web", dp::L4Proto::kTcp, 80, 20, {}}, {"shop", "api", dp::L4Proto::kUdp, 53, 7, {}}};
  fake.counters[0].endpoints = {{*dp::IpAddr::Parse("10.0.0.1"), 8080, 12}, {*dp::IpAddr::Parse("fd00::2"), 8080, 8}};
  EngineOptions options;
  options.node.counters = true;
  options.node.endpoint_counters = true;
  WriteEngine engine(&fake, options);
  absl::StatusOr<v1::GetCountersResponse> all = engine.Counters([](const std::string&, const std::string&) {
    return true;
  });
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->enabled());
  ASSERT_EQ(all->ports_size(), 2);
  EXPECT_EQ(all->ports(0).service(), "web");
  EXPECT_EQ(all->ports(0).protocol(), v1::TCP);
  EXPECT_EQ(all->ports(0).port(), 80u);
  EXPECT_EQ(all->ports(0).connections(), 20u);
  EXPECT_TRUE(all->endpoint_counters());
  ASSERT_EQ(all->ports(0).endpoints_size(), 2);
  EXPECT_EQ(all->ports(0).endpoints(0).address(), "10.0.0.1");
  EXPECT_EQ(all->ports(0).endpoints(0).port(), 8080u);
  EXPECT_EQ(all->ports(0).endpoints(0).connections(), 12u);
  EXPECT_EQ(all->ports(0).endpoints(1).address(), "fd00::2");
  EXPECT_EQ(all->ports(1).protocol(), v1::UDP);
  EXPECT_EQ(all->ports(1).endpoints_size(), 0);
  absl::StatusOr<v1::GetCountersResponse> shop =
      engine.Counters([](const std::string& ns, const std::string&) { return ns == "shop"; });
  ASSERT_TRUE(shop.ok());
  ASSERT_EQ(shop->ports_size(), 1);
  EXPECT_EQ(shop->ports(0).namespace_(), "shop");
  // Counters off: nothing is read, and the answer says so.
  WriteEngine off(&fake, {});
  absl::StatusOr<v1::GetCountersResponse> none = off.Counters([](const std::string&, const std::string&) {
    return true;
  });
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled());
  EXPECT_EQ(none->ports_size(), 0);
}

}  // namespace
}  // namespace nftproxy::server

namespace nftproxy::server {
namespace {

// ---- the DNS responder, through a fake sink ----------------------------------

class FakeDns : public DnsSink {
 public:
  void Update(const DnsChanges& changes, bool full) override {
    updates.push_back({changes, full});
    if (full) serving.clear();
    for (const auto& [key, svc] : changes) {
      if (svc) {
        serving[key] = *svc;
      } else {
        serving.erase(key);
      }
    }
  }
  std::vector<std::pair<DnsChanges, bool>> updates;
  std::map<std::pair<std::string, std::string>, DnsService> serving;
};

std::pair<std::string, std::string> Svc(const char* name) { return {"default", name}; }

TEST(WriteEngine, DnsRecordsChangeWithinTheWrite) {
  FakeDataplane fake;
  FakeDns dns;
  EngineOptions options;
  options.dns = &dns;
  WriteEngine engine(&fake, options);
  v1::ApplyResponse resp;
  ASSERT_TRUE(engine.Apply(Req(R"(upserts { service { metadata { name: "web" } spec { cluster_ips: "198.19.0.20"
      ports { name: "http" port: 80 } } } }
      upserts { service { metadata { name: "db" } spec { ports { name: "pg" port: 5432 } } } })"), &resp).ok());
  // The first commit hands over every service; the headless one is not in the kernel.
  ASSERT_EQ(dns.updates.size(), 1u);
  EXPECT_TRUE(dns.updates[0].second);
  ASSERT_EQ(dns.serving.size(), 2u);
  EXPECT_EQ(dns.serving[Svc("web")].cluster_ips.at(0).ToString(), "198.19.0.20");
  EXPECT_TRUE(dns.serving[Svc("db")].headless());
  EXPECT_EQ(fake.last.services.size(), 1u);
  // A slice of the headless service: only that service, with its endpoint, by the time Apply returns.
  ASSERT_TRUE(engine.Apply(Req(R"(upserts { endpoint_slice { metadata { name: "db-1" } service_name: "db"
      endpoints { addresses: "198.18.10.2" hostname: "db-0" } } })"), &resp).ok());
  ASSERT_EQ(dns.updates.size(), 2u);
  EXPECT_FALSE(dns.updates[1].second);
  EXPECT_EQ(dns.updates[1].first.size(), 1u);
  ASSERT_EQ(dns.serving[Svc("db")].endpoints.size(), 1u);
  EXPECT_EQ(dns.serving[Svc("db")].endpoints[0].hostname, "db-0");
  // A refused write changes nothing.
  fake.fail = absl::InternalError("kernel says no");
  EXPECT_FALSE(engine.Apply(Req(R"(upserts { service { metadata { name: "web" } spec { cluster_ips: "198.19.0.21"
      ports { name: "http" port: 80 } } } })"), &resp).ok());
  EXPECT_EQ(dns.updates.size(), 2u);
  fake.fail = absl::OkStatus();
  // A delete removes the name.
  v1::DeleteRequest del;
  v1::ResourceRef* ref = del.add_refs();
  ref->set_kind(v1::SERVICE);
  ref->set_name("web");
  v1::DeleteResponse dresp;
  ASSERT_TRUE(engine.Delete(del, &dresp).ok());
  EXPECT_EQ(dns.serving.count(Svc("web")), 0u);
}

// The shared log (server/shared_log.h): an in-memory log shared by engines
// standing for nodes; etcd's revisions advance by more than one per entry.
class MemoryLog : public SharedLog {
 public:
  absl::StatusOr<int64_t> Append(const LogPosition& after, const std::string& change) override {
    absl::MutexLock lock(&mu_);
    ++appends;
    if (!down.ok()) return down;
    if (before_append) {
      auto hook = std::move(before_append);
      before_append = nullptr;
      mu_.Unlock();
      hook();
      mu_.Lock();
    }
    if (always_abort || after.seq != entries.size() ||
        (after.seq > 0 && entries[after.seq - 1].position.revision != after.revision)) {
      return absl::AbortedError("the log moved");
    }
    revision += 3;
    entries.push_back(LogEntry{LogPosition{entries.size() + 1, revision}, change});
    return revision;
  }
  absl::StatusOr<std::vector<LogEntry>> ReadAfter(const LogPosition& after, size_t limit,
                                                  int64_t* read_revision) override {
    absl::MutexLock lock(&mu_);
    if (!down.ok()) return down;
    if (base && after.seq < base->position.seq) return absl::OutOfRangeError("folded into the base");
    std::vector<LogEntry> out;
    for (size_t i = after.seq; i < entries.size() && out.size() < limit; ++i) out.push_back(entries[i]);
    *read_revision = revision;
    return out;
  }
  absl::StatusOr<std::optional<LogEntry>> ReadBase(int64_t* read_revision) override {
    absl::MutexLock lock(&mu_);
    if (!down.ok()) return down;
    *read_revision = revision;
    return base;
  }
  // (Entries up to the base stay in `entries`, unread.)
  absl::Status Trim(const LogPosition& at, const std::string& state) override {
    absl::MutexLock lock(&mu_);
    if (!down.ok()) return down;
    if ((base && at.seq <= base->position.seq) || at.seq == 0 || at.seq > entries.size() ||
        entries[at.seq - 1].position.revision != at.revision) {
      return absl::FailedPreconditionError("entry gone");
    }
    ++trims;
    base = LogEntry{at, state};
    return absl::OkStatus();
  }
  uint64_t BaseSeq() const override {
    absl::MutexLock lock(&mu_);
    return base ? base->position.seq : 0;
  }
  std::string Describe() const override { return "memory"; }

  mutable absl::Mutex mu_;
  std::optional<LogEntry> base;
  int trims = 0;
  std::vector<LogEntry> entries;
  int64_t revision = 100;
  int appends = 0;
  bool always_abort = false;
  absl::Status down;
  std::function<void()> before_append;  // runs once, inside the next Append
};

struct Node {
  explicit Node(MemoryLog* log, uint64_t trim_entries = 1000) : engine(&fake, Options(log, trim_entries)) {}
  static EngineOptions Options(MemoryLog* log, uint64_t trim_entries) {
    EngineOptions o;
    o.shared = log;
    o.shared_trim_entries = trim_entries;
    return o;
  }
  FakeDataplane fake;
  WriteEngine engine;
};

std::vector<std::string> Installed(const FakeDataplane& fake) {
  std::vector<std::string> out;
  for (const dp::Service& s : fake.last.services) out.push_back(s.Key());
  return out;
}

TEST(SharedLog, AWriteOnOneNodeReachesTheOtherWithTheEntrysRevision) {
  MemoryLog log;
  Node a(&log), b(&log);
  v1::ApplyResponse resp;
  // Not caught up with the log yet: writes wait, and Status and Health say so.
  EXPECT_EQ(a.engine.Apply(Req(kWeb), &resp).code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(a.engine.Status().shared_store_error(), "");
  EXPECT_NE(a.engine.Health().oldest_pending, absl::InfiniteFuture());
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  ASSERT_TRUE(a.engine.Apply(Req(kWeb), &resp).ok());
  ASSERT_EQ(log.entries.size(), 1u);
  EXPECT_EQ(resp.revision(), 103u);
  EXPECT_EQ(MetaOf(resp.applied(0)).resource_version(), 103u);
  // A's own entry is not applied twice; B applies it at the same revision.
  const int a_applies = a.fake.applies;
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  EXPECT_EQ(a.fake.applies, a_applies);
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(b.fake), std::vector<std::string>{"default/web"});
  EXPECT_EQ(b.fake.last.services, a.fake.last.services);
  v1::ResourceRef ref;
  ref.set_kind(v1::SERVICE);
  ref.set_name("web");
  absl::StatusOr<v1::Resource> got = b.engine.Get(ref);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(MetaOf(*got).resource_version(), 103u);
  EXPECT_EQ(MetaOf(*got).create_time().seconds(), MetaOf(resp.applied(0)).create_time().seconds());
  EXPECT_EQ(b.engine.Status().revision(), 103u);
  EXPECT_EQ(b.engine.SharedPosition()->seq, 1u);
  // A delete through B reaches A.
  v1::DeleteRequest del;
  *del.add_refs() = ref;
  v1::DeleteResponse dresp;
  ASSERT_TRUE(b.engine.Delete(del, &dresp).ok());
  EXPECT_EQ(dresp.revision(), 106u);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(a.fake), std::vector<std::string>{});
  EXPECT_EQ(a.engine.Status().revision(), 106u);
}

TEST(SharedLog, ALostRaceIsRunAgainOnTheCaughtUpState) {
  MemoryLog log;
  Node a(&log), b(&log);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  v1::ApplyResponse resp;
  ASSERT_TRUE(b.engine.Apply(Req("upserts { " + Svc("x", "198.19.0.1") + " }"), &resp).ok());
  // A has not read B's entry: its append loses, it catches up and wins.
  ASSERT_TRUE(a.engine.Apply(Req("upserts { " + Svc("y", "198.19.0.2") + " }"), &resp).ok());
  EXPECT_EQ(resp.revision(), 106u);
  EXPECT_EQ(resp.outcomes_size(), 1);
  EXPECT_EQ(Installed(a.fake), (std::vector<std::string>{"default/x", "default/y"}));
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  EXPECT_EQ(b.fake.last.services, a.fake.last.services);
  // Re-validated: the same VIP as B's newer service is refused, nothing appended.
  ASSERT_TRUE(b.engine.Apply(Req("upserts { " + Svc("z", "198.19.0.3") + " }"), &resp).ok());
  const size_t entries = log.entries.size();
  absl::Status s = a.engine.Apply(Req("upserts { " + Svc("w", "198.19.0.3") + " }"), &resp);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(log.entries.size(), entries);
  EXPECT_EQ(Installed(a.fake), (std::vector<std::string>{"default/x", "default/y", "default/z"}));
}

TEST(SharedLog, RetriesAreBoundedThenAborted) {
  MemoryLog log;
  Node a(&log);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  log.always_abort = true;
  v1::ApplyResponse resp;
  absl::Status s = a.engine.Apply(Req(kWeb), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(log.appends, 1 + EngineOptions{}.shared_retries);
  EXPECT_FALSE(a.fake.committed);
}

TEST(SharedLog, AnEntryWrittenWhileAppendingIsAppliedFirst) {
  MemoryLog log;
  Node a(&log), b(&log);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  v1::ApplyResponse resp;
  // B commits the same resource while A's append is on its way: A's loses,
  // and A's re-run finds it (version check against B's write).
  log.before_append = [&] {
    v1::ApplyResponse r;
    EXPECT_TRUE(b.engine.Apply(Req("upserts { " + Svc("x", "198.19.0.1") + " }"), &r).ok());
  };
  ASSERT_TRUE(a.engine.Apply(Req(R"(upserts { service { metadata { name: "x" } spec { cluster_ips: "198.19.0.9"
      ports { port: 80 } } } })"), &resp).ok());
  EXPECT_EQ(resp.outcomes(0), "configured");
  ASSERT_TRUE(b.engine.FollowSharedLog().ok());
  EXPECT_EQ(a.fake.last.services, b.fake.last.services);
  ASSERT_EQ(b.fake.last.services.size(), 1u);
  EXPECT_EQ(b.fake.last.services[0].cluster_ips.at(0).ToString(), "198.19.0.9");
  EXPECT_EQ(a.engine.Status().revision(), b.engine.Status().revision());
}

TEST(SharedLog, StoreDownFailsWritesAndLeavesTheKernel) {
  MemoryLog log;
  Node a(&log);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  v1::ApplyResponse resp;
  ASSERT_TRUE(a.engine.Apply(Req(kWeb), &resp).ok());
  const int applies = a.fake.applies;
  log.down = absl::UnavailableError("etcd at http://127.0.0.1:1: connection refused");
  absl::Status s = a.engine.Apply(Req("upserts { " + Svc("y", "198.19.0.2") + " }"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(s.message()).find("etcd at"), std::string::npos);
  EXPECT_EQ(a.fake.applies, applies);
  const absl::Time cut_off = absl::Now();
  EXPECT_FALSE(a.engine.FollowSharedLog().ok());
  EXPECT_EQ(a.engine.Status().shared_store(), "memory");
  EXPECT_NE(a.engine.Status().shared_store_error(), "");
  // Cut off: a change counts as pending since then (/healthz after the timeout).
  EXPECT_GE(a.engine.Health().oldest_pending, cut_off);
  EXPECT_FALSE(Healthy(a.engine.Health(), absl::Seconds(60), absl::Now() + absl::Seconds(61)));
  log.down = absl::OkStatus();
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  EXPECT_EQ(a.engine.Status().shared_store_error(), "");
  EXPECT_EQ(a.engine.Health().oldest_pending, absl::InfiniteFuture());
  EXPECT_TRUE(a.engine.Apply(Req("upserts { " + Svc("y", "198.19.0.2") + " }"), &resp).ok());
}

TEST(SharedLog, StartUpReplaysTheLogOverTheCachedState) {
  MemoryLog log;
  Node writer(&log);
  ASSERT_TRUE(writer.engine.FollowSharedLog().ok());
  v1::ApplyResponse resp;
  ASSERT_TRUE(writer.engine.Apply(Req("upserts { " + Svc("x", "198.19.0.1") + " }"), &resp).ok());
  ASSERT_TRUE(writer.engine.Apply(Req("upserts { " + Svc("y", "198.19.0.2") + " }"), &resp).ok());
  v1::DeleteRequest del;
  v1::ResourceRef* ref = del.add_refs();
  ref->set_kind(v1::SERVICE);
  ref->set_name("x");
  v1::DeleteResponse dresp;
  ASSERT_TRUE(writer.engine.Delete(del, &dresp).ok());
  // A node whose cache holds an old x and a z: it serves them until the log
  // is read, then exactly the log's state.
  Node cached(&log);
  State state;
  for (const char* name : {"x", "z"}) {
    v1::Resource r;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
        Svc(name, name[0] == 'x' ? "198.19.0.1" : "198.19.0.3"), &r));
    MutableMetaOf(&r)->set_namespace_("default");
    MutableMetaOf(&r)->set_resource_version(50);
    state.objects[KeyOf(r)] = r;
  }
  state.revision = 50;
  ASSERT_TRUE(cached.engine.Restore(state).ok());
  EXPECT_EQ(Installed(cached.fake), (std::vector<std::string>{"default/x", "default/z"}));
  ASSERT_TRUE(cached.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(cached.fake), std::vector<std::string>{"default/y"});
  EXPECT_EQ(cached.fake.last.services, writer.fake.last.services);
  EXPECT_EQ(cached.engine.Status().revision(), writer.engine.Status().revision());
  EXPECT_EQ(cached.engine.SharedPosition()->seq, 3u);
}

// An empty log does not wipe a node's cache (a node moving to etcd, a new
// prefix, an etcd that lost its data): the cache becomes entry 1, and a
// second node with another cache follows that entry instead of seeding.
TEST(SharedLog, AnEmptyLogIsSeededFromTheCacheNotTakenAsEmpty) {
  MemoryLog log;
  auto cache = [](std::initializer_list<const char*> names) {
    State state;
    for (const char* name : names) {
      v1::Resource r;
      EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
          Svc(name, absl::StrCat("198.19.0.", 1 + (name[0] - 'a'))), &r));
      MutableMetaOf(&r)->set_namespace_("default");
      MutableMetaOf(&r)->set_resource_version(7);
      state.objects[KeyOf(r)] = r;
    }
    state.revision = 7;
    return state;
  };
  Node first(&log), second(&log);
  ASSERT_TRUE(first.engine.Restore(cache({"a", "b"})).ok());
  ASSERT_TRUE(second.engine.Restore(cache({"c"})).ok());
  ASSERT_TRUE(first.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(first.fake), (std::vector<std::string>{"default/a", "default/b"}));
  ASSERT_EQ(log.entries.size(), 1u);
  EXPECT_EQ(first.engine.SharedPosition()->seq, 1u);
  // The objects now carry the entry's revision.
  EXPECT_EQ(first.engine.Status().revision(), static_cast<uint64_t>(log.entries[0].position.revision));
  // The second node finds a non-empty log: it follows it.
  ASSERT_TRUE(second.engine.FollowSharedLog().ok());
  EXPECT_EQ(log.entries.size(), 1u);
  EXPECT_EQ(Installed(second.fake), (std::vector<std::string>{"default/a", "default/b"}));
  // A node with an empty cache seeds nothing.
  MemoryLog empty;
  Node fresh(&empty);
  ASSERT_TRUE(fresh.engine.FollowSharedLog().ok());
  EXPECT_TRUE(empty.entries.empty());
}

// Two nodes seeding at once: the guarded append lets one win; the other is
// told to read again and then follows the winner's entry.
TEST(SharedLog, ASeedThatLostTheRaceReadsAgain) {
  MemoryLog log;
  Node a(&log), b(&log);
  State state;
  v1::Resource r;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(Svc("a", "198.19.0.1"), &r));
  MutableMetaOf(&r)->set_namespace_("default");
  state.objects[KeyOf(r)] = r;
  ASSERT_TRUE(a.engine.Restore(state).ok());
  ASSERT_TRUE(b.engine.Restore(state).ok());
  log.before_append = [&] { ASSERT_TRUE(b.engine.FollowSharedLog().ok()); };
  absl::StatusOr<int64_t> lost = a.engine.FollowSharedLog();
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kAborted) << lost.status();
  EXPECT_FALSE(a.engine.SharedPosition().has_value());
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  EXPECT_EQ(log.entries.size(), 1u);
  EXPECT_EQ(a.engine.SharedPosition()->seq, 1u);
  EXPECT_EQ(a.fake.last.services, b.fake.last.services);
}

// Trimming: a node folds the entries up to its position into a base; a
// node behind it reads the base and what follows whole, and a new node starts
// from it, with the same state and resourceVersions as the writer.
TEST(SharedLog, TrimmedEntriesAreReadFromTheBase) {
  MemoryLog log;
  // (the name spreads a node's threshold by up to half again: none here)
  Node a(&log, 1), lagging(&log);
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  ASSERT_TRUE(lagging.engine.FollowSharedLog().ok());
  v1::ApplyResponse resp;
  ASSERT_TRUE(a.engine.Apply(Req("upserts { " + Svc("x", "198.19.0.1") + " }"), &resp).ok());
  ASSERT_TRUE(lagging.engine.FollowSharedLog().ok());
  ASSERT_TRUE(a.engine.Apply(Req("upserts { " + Svc("y", "198.19.0.2") + " }"), &resp).ok());
  v1::DeleteRequest del;
  v1::ResourceRef* ref = del.add_refs();
  ref->set_kind(v1::SERVICE);
  ref->set_name("x");
  v1::DeleteResponse dresp;
  ASSERT_TRUE(a.engine.Delete(del, &dresp).ok());
  ASSERT_TRUE(a.engine.Apply(Req("upserts { " + Svc("z", "198.19.0.3") + " }"), &resp).ok());
  ASSERT_TRUE(a.engine.TrimSharedLog().ok());
  ASSERT_EQ(log.trims, 1);
  EXPECT_EQ(log.BaseSeq(), 4u);
  // Trimming again at the same entry is not a trim.
  ASSERT_TRUE(a.engine.TrimSharedLog().ok());
  EXPECT_EQ(log.trims, 1);
  // The lagging node (at entry 1) reads the base whole.
  ASSERT_TRUE(lagging.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(lagging.fake), (std::vector<std::string>{"default/y", "default/z"}));
  EXPECT_EQ(lagging.engine.SharedPosition()->seq, 4u);
  // A new node starts from the base, with every resource's own version.
  Node fresh(&log);
  ASSERT_TRUE(fresh.engine.FollowSharedLog().ok());
  EXPECT_EQ(fresh.fake.last.services, a.fake.last.services);
  v1::ResourceRef y;
  y.set_kind(v1::SERVICE);
  y.set_name("y");
  absl::StatusOr<v1::Resource> from_a = a.engine.Get(y), from_fresh = fresh.engine.Get(y);
  ASSERT_TRUE(from_a.ok() && from_fresh.ok());
  EXPECT_EQ(from_fresh->DebugString(), from_a->DebugString());
  EXPECT_GT(MetaOf(*from_a).resource_version(), 0u);
  EXPECT_EQ(fresh.engine.Status().revision(), a.engine.Status().revision());
  // Writes go on after the base, on every node.
  ASSERT_TRUE(fresh.engine.Apply(Req("upserts { " + Svc("w", "198.19.0.4") + " }"), &resp).ok());
  ASSERT_TRUE(a.engine.FollowSharedLog().ok());
  ASSERT_TRUE(lagging.engine.FollowSharedLog().ok());
  EXPECT_EQ(Installed(a.fake), (std::vector<std::string>{"default/w", "default/y", "default/z"}));
  EXPECT_EQ(lagging.fake.last.services, a.fake.last.services);
}

TEST(SharedLog, StateEncodingKeepsVersionsAndRefusesDamage) {
  std::map<Key, v1::Resource> objects;
  v1::Resource r;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(Svc("a", "198.19.0.1"), &r));
  MutableMetaOf(&r)->set_namespace_("default");
  MutableMetaOf(&r)->set_resource_version(42);
  objects[KeyOf(r)] = r;
  absl::StatusOr<std::map<Key, v1::Resource>> back = DecodeState(EncodeState(objects));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ(MetaOf(back->begin()->second).resource_version(), 42u);
  EXPECT_EQ(DecodeState("\xff\xff not a state").status().code(), absl::StatusCode::kDataLoss);
  MutableMetaOf(&objects.begin()->second)->set_resource_version(0);
  EXPECT_EQ(DecodeState(EncodeState(objects)).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace nftproxy::server
