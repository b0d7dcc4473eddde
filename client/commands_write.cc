// apply, delete, diff, sync: the commands that send manifests.
#include <algorithm>
#include <iostream>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/output.h"
#include "common/errors.h"

namespace nftproxy::client {
namespace {

// Where a resource came from, for placing a refusal (Locate): the manifest
// document without its body, so that a large apply keeps one copy of each
// resource (the request's) and not two.
ManifestDoc Placement(const ManifestDoc& d) {
  ManifestDoc p;
  p.file = d.file;
  p.index = d.index;
  p.item = d.item;
  p.resource = ResourceOf(KeyOf(d.resource));
  return p;
}

// Above this many resources `diff` reads the live state by listing it page by
// page rather than with one Get per resource.
constexpr size_t kDiffGetLimit = 500;

}  // namespace

int Client::Apply(const Options& o) {
  if (o.file.empty()) return Usage("apply", "-f PATH is required");
  if (int rc = Connect(); rc != kExitOk) return rc;
  v1::ApplyRequest req;
  req.set_dry_run(o.dry_run);
  req.set_source(o.source);
  std::vector<ManifestDoc> placed;
  const int rc = ReadManifests(o, "apply", [&](ManifestDoc&& d) {
    placed.push_back(Placement(d));
    *req.add_upserts() = std::move(d.resource);
  });
  if (rc != kExitOk) return rc;
  // References suffice for the report: the reply stays small at any size.
  req.set_brief(true);
  v1::ApplyResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
  if (!s.ok()) return Report(s, placed);
  int i = resp.deleted_size();
  for (const v1::ResourceRef& r : resp.applied_refs()) {
    const std::string outcome = i < resp.outcomes_size() ? resp.outcomes(i) : "applied";
    ++i;
    std::cout << RefName(KeyOf(r)) << " " << outcome << DryRun(o) << "\n";
  }
  return kExitOk;
}

int Client::Delete(const Options& o) {
  if (o.file.empty()) {
    const KindInfo* kind = o.positional.size() >= 2 ? KindByWord(o.positional[0]) : nullptr;
    if (kind == nullptr) return Usage("delete", "expected KIND NAME... (e.g. delete service web) or -f PATH");
    if (int rc = Connect(); rc != kExitOk) return rc;
    int result = kExitOk;
    // One call per name, as kubectl deletes: with --ignore-not-found a
    // missing one is skipped without touching the others.
    for (size_t n = 1; n < o.positional.size(); ++n) {
      v1::DeleteRequest req;
      *req.add_refs() = RefOf(Key{kind->kind, Namespace(o), o.positional[n]});
      req.set_source(o.source);
      req.set_dry_run(o.dry_run);
      v1::DeleteResponse resp;
      absl::Status s = Call(&v1::Proxy::Stub::Delete, req, &resp);
      if (absl::IsNotFound(s) && o.ignore_not_found) continue;
      if (!s.ok()) {
        result = Report(s);
        if (!absl::IsNotFound(s)) return result;
        continue;
      }
      // Named by the kind asked for: the reply's references may leave it out.
      for (const v1::ResourceRef& d : resp.deleted()) {
        std::cout << RefName(Key{kind->kind, KeyOf(d).ns, d.name()}) << " deleted" << DryRun(o) << "\n";
      }
    }
    return result;
  }
  if (!o.positional.empty()) return Usage("delete", "give either -f PATH or KIND NAME, not both");
  if (int rc = Connect(); rc != kExitOk) return rc;
  std::vector<ManifestDoc> placed;
  v1::ApplyRequest req;
  req.set_dry_run(o.dry_run);
  req.set_source(o.source);
  const int rc = ReadManifests(o, "delete", [&](ManifestDoc&& d) {
    placed.push_back(Placement(d));
    *req.add_deletes() = RefOf(KeyOf(d.resource));
  });
  if (rc != kExitOk) return rc;
  v1::ApplyResponse resp;
  while (true) {
    if (req.deletes_size() == 0) return kExitOk;  // all of them were missing
    absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
    if (s.ok()) break;
    // The deletes are all or nothing, so a missing resource fails them all:
    // with --ignore-not-found it is taken out (the error names it) and the
    // rest sent again.
    const std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s);
    if (!o.ignore_not_found || !absl::IsNotFound(s) || !detail || !detail->has_resource()) return Report(s, placed);
    const Key missing = KeyOf(detail->resource());
    auto* deletes = req.mutable_deletes();
    const int before = deletes->size();
    deletes->erase(std::remove_if(deletes->begin(), deletes->end(),
                                  [&](const v1::ResourceRef& r) { return KeyOf(r) == missing; }),
                   deletes->end());
    if (deletes->size() == before) return Report(s, placed);
  }
  for (const v1::ResourceRef& d : resp.deleted()) std::cout << RefName(KeyOf(d)) << " deleted" << DryRun(o) << "\n";
  return kExitOk;
}

int Client::Diff(const Options& o) {
  if (o.file.empty()) return Usage("diff", "-f PATH is required");
  if (int rc = Connect(); rc != kExitOk) return rc;
  std::vector<ManifestDoc> placed;
  v1::ApplyRequest req;
  req.set_dry_run(true);
  req.set_source(o.source);
  const int rc = ReadManifests(o, "diff", [&](ManifestDoc&& d) {
    placed.push_back(Placement(d));
    *req.add_upserts() = std::move(d.resource);
  });
  if (rc != kExitOk) return rc;
  // The server's dry run says whether the change would be accepted and
  // gives each resource as it would be stored.
  v1::ApplyResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
  if (!s.ok()) {
    const int rc = Report(s, placed);
    return rc == kExitUnreachable ? rc : kExitBadInput;
  }
  const size_t n = std::min<size_t>(resp.applied_size(), placed.size());
  // Compared as they would be written back: server-assigned fields and
  // explicit defaults left out on both sides.
  auto comparable = [](const v1::Resource& r) {
    v1::Resource c = WithoutServerFields(r);
    ClearExplicitDefaults(&c);
    return c;
  };
  std::vector<std::string> diffs(n);
  std::vector<bool> live_found(n, false);
  auto compare = [&](size_t i, const v1::Resource* live) {
    const Key key = KeyOf(resp.applied(i));
    live_found[i] = live != nullptr;
    const v1::Resource want = comparable(resp.applied(i));
    std::optional<v1::Resource> have;
    if (live != nullptr) have = comparable(*live);
    // Equal bytes are equal text: YAML is rendered only for what differs,
    // which is what keeps a no-op diff of a large manifest fast.
    if (have && DeterministicBytes(*have) == DeterministicBytes(want)) {
      diffs[i].clear();
      return;
    }
    diffs[i] = UnifiedDiff(have ? ResourceYaml(*have) : "", ResourceYaml(want),
                           live ? absl::StrCat(RefName(key), " (live)") : "/dev/null (not on the server)",
                           absl::StrCat(RefName(key), " (", placed[i].file, ", document ", placed[i].index, ")"));
  };
  if (n <= kDiffGetLimit) {
    for (size_t i = 0; i < n; ++i) {
      v1::GetRequest get;
      *get.mutable_ref() = RefOf(KeyOf(resp.applied(i)));
      v1::Resource live;
      absl::Status gs = Call(&v1::Proxy::Stub::Get, get, &live);
      if (!gs.ok() && !absl::IsNotFound(gs)) {
        const int rc = Report(gs);
        return rc == kExitUnreachable ? rc : kExitBadInput;
      }
      compare(i, gs.ok() ? &live : nullptr);
    }
  } else {
    // The live state of the kinds and namespaces the manifests name, a page
    // at a time; only the diffs are kept.
    std::map<Key, size_t> wanted;
    std::map<std::pair<v1::Kind, std::string>, bool> listings;
    for (size_t i = 0; i < n; ++i) {
      const Key key = KeyOf(resp.applied(i));
      wanted.emplace(key, i);
      listings[{key.kind, key.ns}] = true;
    }
    for (const auto& [listing, unused] : listings) {
      const int rc = List(listing.first, listing.second, [&](const v1::Resource& live) {
        if (auto it = wanted.find(KeyOf(live)); it != wanted.end()) compare(it->second, &live);
      });
      if (rc != kExitOk) return rc == kExitUnreachable ? rc : kExitBadInput;
    }
    for (size_t i = 0; i < n; ++i) {
      if (!live_found[i]) compare(i, nullptr);
    }
  }
  bool differs = false;
  for (const std::string& diff : diffs) {
    if (diff.empty()) continue;
    differs = true;
    std::cout << diff;
  }
  return differs ? kExitDiffers : kExitOk;
}

int Client::Sync(const Options& o) {
  if (o.source.empty()) return Usage("sync", "--source NAME is required (whose resources are replaced)");
  if (o.file.empty()) return Usage("sync", "-f PATH is required");
  if (int rc = Connect(); rc != kExitOk) return rc;
  std::vector<ManifestDoc> placed;
  v1::SyncRequest req;
  req.set_source(o.source);
  req.set_dry_run(o.dry_run);
  const int rc = ReadManifests(o, "sync", [&](ManifestDoc&& d) {
    placed.push_back(Placement(d));
    *req.add_resources() = std::move(d.resource);
  });
  if (rc != kExitOk) return rc;
  v1::SyncResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Sync, req, &resp);
  if (!s.ok()) return Report(s, placed);
  for (const v1::ResourceRef& r : resp.deleted()) std::cout << RefName(KeyOf(r)) << " deleted" << DryRun(o) << "\n";
  for (const v1::ResourceRef& r : resp.created()) std::cout << RefName(KeyOf(r)) << " created" << DryRun(o) << "\n";
  for (const v1::ResourceRef& r : resp.configured()) {
    std::cout << RefName(KeyOf(r)) << " configured" << DryRun(o) << "\n";
  }
  std::cout << "source " << o.source << ": " << resp.created_size() << " created, " << resp.configured_size()
            << " configured, " << resp.deleted_size() << " deleted, " << resp.unchanged() << " unchanged"
            << DryRun(o) << " (revision " << resp.revision() << ")\n";
  return kExitOk;
}

int Client::ReadManifests(const Options& o, const std::string& command,
                          const std::function<void(ManifestDoc&&)>& take) {
  if (o.file.empty()) return Usage(command, "-f PATH is required");
  // Streamed: each resource is handed on as soon as it is read, so a large
  // manifest is never held whole as parsed documents.
  std::vector<std::string> warnings;
  ManifestOptions options;
  options.default_namespace = o.ns;
  absl::Status s = ForEachManifest(
      o.file,
      [&](ManifestDoc d) {
        ClearExplicitDefaults(&d.resource);
        take(std::move(d));
        return absl::OkStatus();
      },
      &warnings, options);
  for (const std::string& w : warnings) std::cerr << "warning: " << w << "\n";
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitBadInput;
  }
  return kExitOk;
}

int Client::Load(const Options& o, const std::string& command, std::vector<ManifestDoc>* docs) {
  return ReadManifests(o, command, [&](ManifestDoc&& d) { docs->push_back(std::move(d)); });
}

}  // namespace nftproxy::client
