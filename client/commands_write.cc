// apply, delete, diff, sync: the commands that send manifests.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/output.h"

namespace nftproxy::client {

int Client::Apply(const Options& o) {
  std::vector<ManifestDoc> docs;
  if (int rc = Load(o, "apply", &docs); rc != kExitOk) return rc;
  v1::ApplyRequest req;
  req.set_dry_run(o.dry_run);
  req.set_source(o.source);
  for (const ManifestDoc& d : docs) *req.add_upserts() = d.resource;
  v1::ApplyResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
  if (!s.ok()) return Report(s, docs);
  int i = resp.deleted_size();
  for (const v1::Resource& r : resp.applied()) {
    const std::string outcome = i < resp.outcomes_size() ? resp.outcomes(i) : "applied";
    ++i;
    std::cout << RefName(KeyOf(r)) << " " << outcome << DryRun(o) << "\n";
  }
  return kExitOk;
}

int Client::Delete(const Options& o) {
  if (o.file.empty()) {
    const KindInfo* kind = o.positional.size() == 2 ? KindByWord(o.positional[0]) : nullptr;
    if (kind == nullptr) return Usage("delete", "expected KIND NAME (e.g. delete service web) or -f PATH");
    v1::DeleteRequest req;
    *req.add_refs() = RefOf(Key{kind->kind, Namespace(o), o.positional[1]});
    req.set_source(o.source);
    req.set_dry_run(o.dry_run);
    v1::DeleteResponse resp;
    absl::Status s = Call(&v1::Proxy::Stub::Delete, req, &resp);
    if (!s.ok()) return Report(s);
    // Named by the kind asked for: the reply's references may leave it out.
    for (const v1::ResourceRef& d : resp.deleted()) {
      std::cout << RefName(Key{kind->kind, KeyOf(d).ns, d.name()}) << " deleted" << DryRun(o) << "\n";
    }
    return kExitOk;
  }
  if (!o.positional.empty()) return Usage("delete", "give either -f PATH or KIND NAME, not both");
  std::vector<ManifestDoc> docs;
  if (int rc = Load(o, "delete", &docs); rc != kExitOk) return rc;
  v1::ApplyRequest req;
  req.set_dry_run(o.dry_run);
  req.set_source(o.source);
  for (const ManifestDoc& d : docs) *req.add_deletes() = RefOf(KeyOf(d.resource));
  v1::ApplyResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
  if (!s.ok()) return Report(s, docs);
  for (const v1::ResourceRef& d : resp.deleted()) std::cout << RefName(KeyOf(d)) << " deleted" << DryRun(o) << "\n";
  return kExitOk;
}

int Client::Diff(const Options& o) {
  std::vector<ManifestDoc> docs;
  if (int rc = Load(o, "diff", &docs); rc != kExitOk) return rc;
  // The server's dry run says whether the change would be accepted and
  // gives each resource as it would be stored.
  v1::ApplyRequest req;
  req.set_dry_run(true);
  req.set_source(o.source);
  for (const ManifestDoc& d : docs) *req.add_upserts() = d.resource;
  v1::ApplyResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
  if (!s.ok()) {
    const int rc = Report(s, docs);
    return rc == kExitUnreachable ? rc : kExitBadInput;
  }
  bool differs = false;
  for (int i = 0; i < resp.applied_size() && i < static_cast<int>(docs.size()); ++i) {
    const v1::Resource& want = resp.applied(i);
    const Key key = KeyOf(want);
    v1::GetRequest get;
    *get.mutable_ref() = RefOf(key);
    v1::Resource live;
    absl::Status gs = Call(&v1::Proxy::Stub::Get, get, &live);
    std::string live_text;
    if (gs.ok()) {
      live_text = ResourceYaml(WithoutServerFields(live));
    } else if (!absl::IsNotFound(gs)) {
      const int rc = Report(gs);
      return rc == kExitUnreachable ? rc : kExitBadInput;
    }
    const std::string diff =
        UnifiedDiff(live_text, ResourceYaml(WithoutServerFields(want)),
                    gs.ok() ? absl::StrCat(RefName(key), " (live)") : "/dev/null (not on the server)",
                    absl::StrCat(RefName(key), " (", docs[i].file, ", document ", docs[i].index, ")"));
    if (!diff.empty()) {
      differs = true;
      std::cout << diff;
    }
  }
  return differs ? kExitDiffers : kExitOk;
}

int Client::Sync(const Options& o) {
  if (o.source.empty()) return Usage("sync", "--source NAME is required (whose resources are replaced)");
  std::vector<ManifestDoc> docs;
  if (int rc = Load(o, "sync", &docs); rc != kExitOk) return rc;
  v1::SyncRequest req;
  req.set_source(o.source);
  req.set_dry_run(o.dry_run);
  for (const ManifestDoc& d : docs) *req.add_resources() = d.resource;
  v1::SyncResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Sync, req, &resp);
  if (!s.ok()) return Report(s, docs);
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

int Client::Load(const Options& o, const std::string& command, std::vector<ManifestDoc>* docs) {
  if (o.file.empty()) return Usage(command, "-f PATH is required");
  std::vector<std::string> warnings;
  absl::StatusOr<std::vector<ManifestDoc>> loaded = LoadManifests(o.file, &warnings);
  for (const std::string& w : warnings) std::cerr << "warning: " << w << "\n";
  if (!loaded.ok()) {
    std::cerr << "error: " << loaded.status().message() << "\n";
    return kExitBadInput;
  }
  for (ManifestDoc& d : *loaded) {
    v1::ObjectMeta* m = MutableMetaOf(&d.resource);
    if (m != nullptr && m->namespace_().empty() && !o.ns.empty()) m->set_namespace_(o.ns);
  }
  *docs = std::move(*loaded);
  return kExitOk;
}

}  // namespace nftproxy::client
