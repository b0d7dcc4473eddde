// libFuzzer target: request bytes through server::WriteEngine (examine,
// stage, validate, build the model, commit) on a fake dataplane and store
// (fake_dataplane.h). Each input is a fresh engine and a sequence of calls:
//
//   input := op*
//   op    := header:u8 length:u16le payload[length]   (length cut to what is left)
//   header % 8:
//     0 Apply(payload)            the raw ApplyRequest bytes
//     1 Sync(payload)             the raw SyncRequest bytes
//     2 Delete(DeleteRequest parsed from payload)
//     3 List(ListRequest parsed from payload), following its page tokens
//     4 Get(ResourceRef parsed from payload)
//     5 GetRuleset(GetRulesetRequest parsed from payload), StreamRuleset, Status
//     6 Watch(WatchRequest parsed from payload) up to its bookmark
//     7 the next dataplane change is refused (code from the header's high
//       bits, blamed on the service "ns/name" in the payload, if any)
//
// No input may crash, leak or trip UBSan. After each write the engine must
// also keep its promises (an abort is a finding):
//  - a write that fails, or leaves the revision where it was (dry run, no
//    change), leaves every resource as it was; a write that changes
//    something adds exactly 1 to the revision;
//  - List pages come in key order and end; Get returns what List does;
//    Status counts what List does;
//  - the store holds what List does (every change recorded, none lost);
//  - the dataplane holds the model of the whole state (what each change
//    sent adds up to a fresh BuildModel), and that model is one the kernel
//    can take (FakeDataplane's checks);
//  - at the end: the state can be restored into a fresh engine (a server
//    restart would succeed), and Watch from an early revision replays the
//    changes that lead from that revision's state to the current one.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/resource.h"
#include "server/model_builder.h"
#include "server/write_engine.h"
#include "tests/fuzz/fake_dataplane.h"

namespace nftproxy::fuzz {
namespace {

using google::protobuf::util::MessageDifferencer;

constexpr uint16_t kNodePortMin = 30000;
constexpr uint16_t kNodePortMax = 30099;

server::EngineOptions Options(server::StateStore* store) {
  server::EngineOptions o;
  o.node_name = "node-a";
  o.node_port_min = kNodePortMin;
  o.node_port_max = kNodePortMax;
  o.store = store;
  o.watch_log_capacity = 64;
  // Small, so that inputs stay cheap and the limits are reachable.
  o.limits.ports_per_service = 8;
  o.limits.addresses_per_service = 8;
  o.limits.endpoints_per_slice = 16;
  o.limits.ports_per_slice = 8;
  o.limits.labels_per_object = 8;
  auto cidr = dp::Cidr::Parse("10.0.0.0/16");
  if (cidr.ok()) o.node.cluster_cidrs.push_back(*cidr);
  return o;
}

struct Listing {
  std::vector<v1::Resource> resources;
  uint64_t revision = 0;
};

// Every resource, through pages of 3.
Listing ListAll(const server::WriteEngine& engine) {
  Listing out;
  v1::ListRequest req;
  req.set_page_size(3);
  std::optional<Key> last;
  for (int pages = 0;; ++pages) {
    absl::StatusOr<v1::ListResponse> page = engine.List(req);
    if (!page.ok()) Finding("List of everything failed: " + page.status().ToString());
    if (pages == 0) out.revision = page->revision();
    if (page->revision() != out.revision) Finding("the revision changed between pages without a write");
    for (const v1::Resource& r : page->resources()) {
      const Key k = KeyOf(r);
      if (last.has_value() && !(*last < k)) Finding("List is not in key order: " + Describe(k));
      last = k;
      out.resources.push_back(r);
    }
    if (page->next_page_token().empty()) break;
    if (pages > 10000) Finding("List pages do not end");
    req.set_page_token(page->next_page_token());
  }
  return out;
}

bool Same(const std::vector<v1::Resource>& a, const std::vector<v1::Resource>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!MessageDifferencer::Equals(a[i], b[i])) return false;
  }
  return true;
}

server::State StateOf(const Listing& l) {
  server::State s;
  for (const v1::Resource& r : l.resources) s.objects[KeyOf(r)] = r;
  s.revision = l.revision;
  return s;
}

bool SameModel(const dp::Model& a, const dp::Model& b) {
  return dp::Ruleset::SameNode(a.node, b.node) && a.services == b.services;
}

std::string Keys(const dp::Model& m) {
  std::string out;
  for (const dp::Service& s : m.services) absl::StrAppend(&out, s.Key(), " ");
  return out;
}

class Run {
 public:
  Run() : fake_(kNodePortMin, kNodePortMax), engine_(&fake_, Options(&store_)) {}

  void Op(uint8_t header, const std::string& payload) {
    switch (header % 8) {
      case 0: {
        v1::ApplyResponse resp;
        Write(engine_.Apply(payload, &resp));
        break;
      }
      case 1: {
        v1::SyncResponse resp;
        Write(engine_.Sync(payload, &resp));
        break;
      }
      case 2: {
        v1::DeleteRequest req;
        if (!req.ParseFromString(payload)) return;
        v1::DeleteResponse resp;
        Write(engine_.Delete(req, &resp));
        break;
      }
      case 3: {
        v1::ListRequest req;
        if (!req.ParseFromString(payload)) return;
        req.set_page_size(req.page_size() % 50);
        for (int pages = 0; pages < 100; ++pages) {
          absl::StatusOr<v1::ListResponse> page = engine_.List(req);
          if (!page.ok() || page->next_page_token().empty()) break;
          req.set_page_token(page->next_page_token());
        }
        break;
      }
      case 4: {
        v1::ResourceRef ref;
        if (!ref.ParseFromString(payload)) return;
        absl::StatusOr<v1::Resource> r = engine_.Get(ref);
        if (r.ok() && !(KeyOf(*r) == KeyOf(ref))) Finding("Get returned another resource than it was asked for");
        break;
      }
      case 5: {
        v1::GetRulesetRequest req;
        if (!req.ParseFromString(payload)) return;
        (void)engine_.Ruleset(req);
        size_t pieces = 0;
        (void)engine_.StreamRuleset(req.kernel(), [&pieces](const v1::GetRulesetResponse&) { return ++pieces < 4; });
        const v1::StatusResponse status = engine_.Status();
        const Listing now = ListAll(engine_);
        if (status.revision() != now.revision) Finding("Status and List disagree on the revision");
        break;
      }
      case 6: {
        v1::WatchRequest req;
        if (!req.ParseFromString(payload)) return;
        size_t events = 0;
        (void)engine_.Watch(
            req, [] { return true; },
            [&events](const v1::WatchEvent& e) { return e.type() != v1::WatchEvent::BOOKMARK && ++events < 1000; });
        break;
      }
      case 7: {
        static const absl::StatusCode kCodes[] = {absl::StatusCode::kFailedPrecondition,
                                                  absl::StatusCode::kUnavailable, absl::StatusCode::kInternal,
                                                  absl::StatusCode::kResourceExhausted};
        std::string service;
        if (payload.find('/') != std::string::npos && payload.size() < 64) service = payload;
        fake_.FailNext(absl::Status(kCodes[(header >> 3) % 4], "injected kernel refusal"), service);
        break;
      }
    }
  }

  // The end of the input: restart and replay checks.
  void Finish() {
    fake_.FailNext(absl::OkStatus(), "");
    const Listing now = ListAll(engine_);
    // A server restart with this state must succeed and program the same model.
    FakeDataplane fresh(kNodePortMin, kNodePortMax);
    server::WriteEngine restarted(&fresh, Options(nullptr));
    absl::Status s = restarted.Restore(StateOf(now));
    if (!s.ok()) Finding("the state the engine accepted cannot be restored: " + s.ToString());
    if (fake_.committed && !SameModel(fresh.last, fake_.last)) {
      Finding("a restart programs another model than the incremental changes did: " + Keys(fresh.last) + "vs " +
              Keys(fake_.last));
    }
    if (!Same(ListAll(restarted).resources, now.resources)) Finding("a restart changed the resources");
    // Watch from the revision of the first change: that state plus the
    // events since must be the current state.
    if (!early_.has_value()) return;
    v1::WatchRequest req;
    req.set_since_revision(early_->revision);
    std::map<Key, v1::Resource> state = StateOf(*early_).objects;
    bool bookmark = false;
    // Not cancelled until the bookmark came (the stream may stop at the
    // first check of `cancelled` once it is), or, should it never come,
    // after a while (the idle stream polls it every 200 ms).
    int polls = 0;
    absl::Status w = engine_.Watch(
        req, [&] { return bookmark || ++polls > 25; },
        [&](const v1::WatchEvent& e) {
          if (e.type() == v1::WatchEvent::BOOKMARK) {
            bookmark = true;
            if (e.revision() != now.revision) Finding("the bookmark is not at the current revision");
            return false;
          }
          if (e.revision() <= early_->revision || e.revision() > now.revision) {
            Finding(absl::StrCat("a replayed event has revision ", e.revision(), " outside (", early_->revision, ", ",
                                 now.revision, "]"));
          }
          if (e.type() == v1::WatchEvent::UPSERT) {
            state[KeyOf(e.resource())] = e.resource();
          } else if (e.type() == v1::WatchEvent::DELETE) {
            if (state.erase(KeyOf(e.resource())) == 0) Finding("Watch deletes what was not there");
          } else {
            Finding("a Watch event of no type");
          }
          return true;
        });
    if (absl::IsOutOfRange(w)) return;  // the bounded log dropped some
    if (!bookmark) Finding("Watch ended without a bookmark: " + w.ToString());
    std::vector<v1::Resource> replayed;
    for (auto& [k, r] : state) replayed.push_back(std::move(r));
    if (!Same(replayed, now.resources)) Finding("Watch's replay does not lead to the current state");
  }

 private:
  void Write(const absl::Status& s) {
    const Listing after = ListAll(engine_);
    // ENGINE_FUZZ_VERBOSE=1: what each write did (to check seeds).
    static const bool verbose = getenv("ENGINE_FUZZ_VERBOSE") != nullptr;
    if (verbose) {
      fprintf(stderr, "write: %s; revision %llu -> %llu, %zu resources\n", s.ToString().c_str(),
              static_cast<unsigned long long>(before_.revision), static_cast<unsigned long long>(after.revision),
              after.resources.size());
    }
    if (!s.ok() || after.revision == before_.revision) {
      if (after.revision != before_.revision) Finding("a refused write changed the revision: " + s.ToString());
      if (!Same(after.resources, before_.resources)) {
        Finding("a write that changed nothing (or was refused) changed the resources: " + s.ToString());
      }
      if (fake_.committed && !SameModel(fake_.last, installed_)) {
        Finding("a write that changed nothing (or was refused) changed the dataplane: " + s.ToString());
      }
      return;
    }
    if (after.revision != before_.revision + 1) {
      Finding(absl::StrCat("a write moved the revision from ", before_.revision, " to ", after.revision));
    }
    // Get and Status agree with List.
    uint32_t counts[3] = {0, 0, 0};
    for (const v1::Resource& r : after.resources) {
      absl::StatusOr<v1::Resource> got = engine_.Get(RefOf(KeyOf(r)));
      if (!got.ok() || !MessageDifferencer::Equals(*got, r)) Finding("Get disagrees with List on " + Describe(KeyOf(r)));
      if (KeyOf(r).kind == v1::SERVICE) ++counts[0];
      if (KeyOf(r).kind == v1::ENDPOINT_SLICE) ++counts[1];
      if (KeyOf(r).kind == v1::WORKLOAD) ++counts[2];
    }
    const v1::StatusResponse status = engine_.Status();
    if (status.services() != counts[0] || status.endpoint_slices() != counts[1] || status.workloads() != counts[2]) {
      Finding("Status counts other resources than List");
    }
    // The store recorded it.
    const server::State stored = store_.saved;
    std::vector<v1::Resource> saved;
    for (const auto& [k, r] : stored.objects) saved.push_back(r);
    if (stored.revision != after.revision || !Same(saved, after.resources)) {
      Finding(absl::StrCat("the store holds revision ", stored.revision, " with ", saved.size(),
                           " resources; List: revision ", after.revision, " with ", after.resources.size()));
    }
    // The dataplane holds the whole state's model.
    if (!fake_.committed) Finding("a change was accepted but the dataplane has nothing");
    const server::Desired desired(StateOf(after));
    const dp::Model full = server::BuildModel(desired, "node-a", Options(nullptr).node);
    if (!SameModel(full, fake_.last)) {
      Finding("the dataplane's model is not that of the state: " + Keys(fake_.last) + "vs " + Keys(full));
    }
    installed_ = fake_.last;
    before_ = after;
    if (!early_.has_value()) early_ = after;
  }

 public:
  void Start() { before_ = ListAll(engine_); }

 private:
  FakeDataplane fake_;
  FakeStore store_;
  server::WriteEngine engine_;
  Listing before_;
  dp::Model installed_;
  std::optional<Listing> early_;
};

}  // namespace
}  // namespace nftproxy::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Refused writes are logged as warnings, and protobuf logs strings that
  // are not UTF-8: both are noise here.
  nftproxy::log::Configure(nftproxy::log::Level::kError, nftproxy::log::Format::kText);
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    nftproxy::fuzz::Run run;
    run.Start();
    size_t at = 0;
    int ops = 0;
    while (at < size && ops++ < 64) {
      const uint8_t header = data[at++];
      size_t len = 0;
      if (at < size) len = data[at++];
      if (at < size) len |= static_cast<size_t>(data[at++]) << 8;
      len = std::min(len, size - at);
      run.Op(header, std::string(reinterpret_cast<const char*>(data + at), len));
      at += len;
    }
    run.Finish();
  }
  // The engine frees large temporaries on a background thread: wait for
  // them, so that each input ends with its memory freed (leak checks).
  absl::Notification drained;
  nftproxy::Background().Post([&drained] { drained.Notify(); });
  drained.WaitForNotification();
  return 0;
}
