#include "client/cli.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "client/manifest.h"
#include "client/output.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::client {
namespace {

constexpr char kDefaultServer[] = "unix:///run/nftproxy/nftproxy.sock";

struct Options {
  std::string server = kDefaultServer;
  std::string file;
  std::string ns;
  bool all_namespaces = false;
  std::string output;
  std::string source;
  std::string since;
  bool dry_run = false;
  bool client_only = false;
  bool help = false;
  std::vector<std::string> positional;
};

// Every flag a command may take; each command lists the ones it accepts.
struct FlagDoc {
  const char* key;
  const char* spelling;
  const char* help;
};

const FlagDoc kFlagDocs[] = {
    {"file", "-f, --filename PATH", "manifest file, directory (*.yaml, *.yml, *.json) or - for stdin"},
    {"ns", "-n, --namespace NS", "namespace (default: \"default\"; lists: every namespace)"},
    {"all", "-A, --all-namespaces", "list every namespace (the default when -n is not given)"},
    {"output", "-o, --output FORMAT", nullptr},
    {"source", "--source NAME", "the owner written into (and required to match) resources' metadata.source"},
    {"dry-run", "--dry-run", "validate and compile on the server, change nothing"},
    {"since", "--since REVISION", "resume after this revision instead of starting with the current state"},
    {"client", "--client", "print the client version only"},
};

std::vector<FlagSpec> Specs(Options* o) {
  return {{{"--server"}, &o->server},
          {{"-h", "--help"}, nullptr, nullptr, &o->help},
          {{"-f", "--filename"}, &o->file},
          {{"-n", "--namespace"}, &o->ns},
          {{"-A", "--all-namespaces"}, nullptr, nullptr, &o->all_namespaces},
          {{"-o", "--output"}, &o->output},
          {{"--source"}, &o->source},
          {{"--dry-run"}, nullptr, nullptr, &o->dry_run},
          {{"--since"}, &o->since},
          {{"--client"}, nullptr, nullptr, &o->client_only}};
}

// The key in kFlagDocs of a spelling in Specs.
std::string FlagKey(const std::string& spelling) {
  static const std::map<std::string, std::string> keys = {
      {"-f", "file"}, {"--filename", "file"}, {"-n", "ns"}, {"--namespace", "ns"},
      {"-A", "all"}, {"--all-namespaces", "all"}, {"-o", "output"}, {"--output", "output"},
      {"--source", "source"}, {"--dry-run", "dry-run"}, {"--since", "since"}, {"--client", "client"}};
  auto it = keys.find(spelling);
  return it == keys.end() ? "" : it->second;
}

class Client;

struct Command {
  const char* name;
  const char* synopsis;
  const char* summary;
  const char* details;
  std::vector<std::string> flags;  // keys of kFlagDocs
  std::vector<std::string> formats;  // for -o, the first is the default
  int (Client::*run)(const Options&);
};

const std::vector<Command>& Commands();

// ---- talking to the server --------------------------------------------------

std::string Target(const std::string& server) {
  if (absl::StartsWith(server, "unix://")) return "unix:" + server.substr(7);
  if (absl::StartsWith(server, "tcp://")) return server.substr(6);
  return server;
}

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnreachable;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitBadInput;
    default:
      return kExitRefused;
  }
}

// Server errors begin with the resource ("service default/web: ..."); when it
// came from a manifest, the file and document go in front.
std::string Locate(const std::string& message, const std::vector<ManifestDoc>& docs) {
  for (const ManifestDoc& d : docs) {
    const std::string who = DescribeResource(d.resource);
    if (absl::StartsWith(message, who + ":") || absl::StartsWith(message, who + " ")) {
      return absl::StrCat(d.file, ": document ", d.index, ": ", message);
    }
  }
  return message;
}

int Report(const grpc::Status& s, const std::string& server, const std::vector<ManifestDoc>& docs = {}) {
  const int code = ExitCodeFor(s.error_code());
  if (code == kExitUnreachable) {
    std::cerr << "error: cannot reach the nftproxy server at " << server << ": " << s.error_message() << "\n";
  } else {
    std::cerr << "error: " << Locate(s.error_message(), docs) << "\n";
  }
  return code;
}

bool ParseKind(const std::string& word, v1::Kind* kind) {
  static const std::map<std::string, v1::Kind> kinds = {
      {"service", v1::SERVICE}, {"services", v1::SERVICE}, {"svc", v1::SERVICE},
      {"endpointslice", v1::ENDPOINT_SLICE}, {"endpointslices", v1::ENDPOINT_SLICE},
      {"endpoints", v1::ENDPOINT_SLICE}, {"ep", v1::ENDPOINT_SLICE}, {"eps", v1::ENDPOINT_SLICE},
      {"workload", v1::WORKLOAD}, {"workloads", v1::WORKLOAD}, {"wl", v1::WORKLOAD}};
  auto it = kinds.find(word);
  if (it == kinds.end()) return false;
  *kind = it->second;
  return true;
}

int Usage(const std::string& command, const std::string& why) {
  std::cerr << "error: " << why << "\nSee 'nftproxy " << command << " --help'.\n";
  return kExitBadInput;
}

class Client {
 public:
  explicit Client(const std::string& server)
      : server_(server),
        stub_(v1::Proxy::NewStub(grpc::CreateChannel(Target(server), grpc::InsecureChannelCredentials()))) {}

  // ---- apply, delete -f, diff, sync: manifests in ----------------------------

  int Apply(const Options& o) {
    std::vector<ManifestDoc> docs;
    if (int rc = Load(o, "apply", &docs); rc != kExitOk) return rc;
    v1::ApplyRequest req;
    req.set_dry_run(o.dry_run);
    req.set_source(o.source);
    for (const ManifestDoc& d : docs) *req.add_upserts() = d.resource;
    v1::ApplyResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
    if (!s.ok()) return Report(s, server_, docs);
    int i = resp.deleted_size();
    for (const v1::Resource& r : resp.applied()) {
      const std::string outcome = i < resp.outcomes_size() ? resp.outcomes(i) : "applied";
      ++i;
      std::cout << RefName(r) << " " << outcome << DryRun(o) << "\n";
    }
    return kExitOk;
  }

  int Delete(const Options& o) {
    if (o.file.empty()) {
      v1::Kind kind;
      if (o.positional.size() != 2 || !ParseKind(o.positional[0], &kind)) {
        return Usage("delete", "expected KIND NAME (e.g. delete service web) or -f PATH");
      }
      v1::DeleteRequest req;
      *req.add_refs() = Ref(kind, Namespace(o), o.positional[1]);
      req.set_source(o.source);
      v1::DeleteResponse resp;
      grpc::Status s = Call(&v1::Proxy::Stub::Delete, req, &resp);
      if (!s.ok()) return Report(s, server_);
      for (const v1::ResourceRef& d : resp.deleted()) std::cout << RefName(kind, d.namespace_(), d.name()) << " deleted\n";
      return kExitOk;
    }
    if (!o.positional.empty()) return Usage("delete", "give either -f PATH or KIND NAME, not both");
    std::vector<ManifestDoc> docs;
    if (int rc = Load(o, "delete", &docs); rc != kExitOk) return rc;
    v1::ApplyRequest req;
    req.set_dry_run(o.dry_run);
    req.set_source(o.source);
    for (const ManifestDoc& d : docs) {
      const v1::ObjectMeta& m = MetaOfResource(d.resource);
      *req.add_deletes() = Ref(KindOfResource(d.resource), m.namespace_(), m.name());
    }
    v1::ApplyResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
    if (!s.ok()) return Report(s, server_, docs);
    for (const v1::ResourceRef& d : resp.deleted()) {
      std::cout << RefName(d.kind(), d.namespace_(), d.name()) << " deleted" << DryRun(o) << "\n";
    }
    return kExitOk;
  }

  int Diff(const Options& o) {
    std::vector<ManifestDoc> docs;
    if (int rc = Load(o, "diff", &docs); rc != kExitOk) return rc;
    // The server's dry run says whether the change would be accepted and
    // gives each resource as it would be stored.
    v1::ApplyRequest req;
    req.set_dry_run(true);
    req.set_source(o.source);
    for (const ManifestDoc& d : docs) *req.add_upserts() = d.resource;
    v1::ApplyResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Apply, req, &resp);
    if (!s.ok()) {
      const int rc = Report(s, server_, docs);
      return rc == kExitUnreachable ? rc : kExitBadInput;
    }
    bool differs = false;
    for (int i = 0; i < resp.applied_size() && i < static_cast<int>(docs.size()); ++i) {
      const v1::Resource& want = resp.applied(i);
      const v1::ObjectMeta& m = MetaOfResource(want);
      v1::GetRequest get;
      *get.mutable_ref() = Ref(KindOfResource(want), m.namespace_(), m.name());
      v1::Resource live;
      grpc::Status gs = Call(&v1::Proxy::Stub::Get, get, &live);
      std::string live_text;
      if (gs.ok()) {
        live_text = ResourceYaml(WithoutServerFields(live));
      } else if (gs.error_code() != grpc::StatusCode::NOT_FOUND) {
        const int rc = Report(gs, server_);
        return rc == kExitUnreachable ? rc : kExitBadInput;
      }
      const std::string diff =
          UnifiedDiff(live_text, ResourceYaml(WithoutServerFields(want)),
                      gs.ok() ? absl::StrCat(RefName(want), " (live)") : "/dev/null (not on the server)",
                      absl::StrCat(RefName(want), " (", docs[i].file, ", document ", docs[i].index, ")"));
      if (!diff.empty()) {
        differs = true;
        std::cout << diff;
      }
    }
    return differs ? kExitDiffers : kExitOk;
  }

  int Sync(const Options& o) {
    if (o.source.empty()) return Usage("sync", "--source NAME is required (whose resources are replaced)");
    std::vector<ManifestDoc> docs;
    if (int rc = Load(o, "sync", &docs); rc != kExitOk) return rc;
    v1::SyncRequest req;
    req.set_source(o.source);
    req.set_dry_run(o.dry_run);
    for (const ManifestDoc& d : docs) *req.add_resources() = d.resource;
    v1::SyncResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Sync, req, &resp);
    if (!s.ok()) return Report(s, server_, docs);
    for (const v1::ResourceRef& r : resp.deleted()) std::cout << RefName(r.kind(), r.namespace_(), r.name()) << " deleted" << DryRun(o) << "\n";
    for (const v1::ResourceRef& r : resp.created()) std::cout << RefName(r.kind(), r.namespace_(), r.name()) << " created" << DryRun(o) << "\n";
    for (const v1::ResourceRef& r : resp.configured()) std::cout << RefName(r.kind(), r.namespace_(), r.name()) << " configured" << DryRun(o) << "\n";
    std::cout << "source " << o.source << ": " << resp.created_size() << " created, " << resp.configured_size()
              << " configured, " << resp.deleted_size() << " deleted, " << resp.unchanged() << " unchanged"
              << DryRun(o) << " (revision " << resp.revision() << ")\n";
    return kExitOk;
  }

  // ---- reading ----------------------------------------------------------------

  int Get(const Options& o) {
    v1::Kind kind;
    if (o.positional.empty() || o.positional.size() > 2 || !ParseKind(o.positional[0], &kind)) {
      return Usage("get", "expected services, endpoints (endpointslices) or workloads, and optionally a NAME");
    }
    const std::string output = o.output.empty() ? "table" : o.output;
    std::vector<v1::Resource> items;
    const bool one = o.positional.size() == 2;
    if (one) {
      v1::Resource r;
      if (int rc = GetOne(kind, Namespace(o), o.positional[1], &r); rc != kExitOk) return rc;
      items.push_back(r);
    } else if (int rc = List(kind, o.all_namespaces ? "" : o.ns, &items); rc != kExitOk) {
      return rc;
    }
    if (output == "yaml") {
      std::cout << ResourcesYaml(items);
    } else if (output == "json") {
      std::cout << (one ? ResourceJson(items[0]) : ResourcesJson(items));
    } else if (items.empty()) {
      std::cerr << "No resources found" << (o.ns.empty() || o.all_namespaces ? "" : " in " + o.ns + " namespace") << ".\n";
    } else {
      std::vector<std::vector<std::string>> rows = {TableHeader(kind, output == "wide")};
      const absl::Time now = absl::Now();
      for (const v1::Resource& r : items) rows.push_back(TableRow(r, output == "wide", now));
      std::cout << FormatTable(rows);
    }
    return kExitOk;
  }

  int Describe(const Options& o) {
    v1::Kind kind;
    if (o.positional.size() != 2 || !ParseKind(o.positional[0], &kind)) {
      return Usage("describe", "expected service NAME");
    }
    if (kind != v1::SERVICE) {
      return Usage("describe", absl::StrCat("describe shows services; for a ", KindWord(kind), " use: nftproxy get ",
                                            KindWord(kind), " ", o.positional[1], " -o yaml"));
    }
    const std::string ns = Namespace(o);
    v1::Resource r;
    if (int rc = GetOne(v1::SERVICE, ns, o.positional[1], &r); rc != kExitOk) return rc;
    const v1::Service& svc = r.service();
    const v1::ServiceSpec& spec = svc.spec();
    const v1::ObjectMeta& m = svc.metadata();
    using S = v1::ServiceSpec;
    std::vector<std::vector<std::string>> head = {
        {"Name:", m.name()},
        {"Namespace:", m.namespace_()},
        {"Source:", m.source().empty() ? "<manual>" : m.source()},
        {"Labels:", Join(m.labels())},
        {"Resource version:", absl::StrCat(m.resource_version())},
        {"Created:", When(m.create_time())},
        {"Updated:", When(m.update_time())},
        {"Type:", TableRow(r, false, absl::Now())[2]},
        {"Cluster IPs:", List(spec.cluster_ips())},
        {"External IPs:", List(spec.external_ips())},
        {"Load-balancer IPs:", List(spec.load_balancer_ips())},
        {"Load-balancer source ranges:", List(spec.load_balancer_source_ranges())},
        {"Load balancing:", S::LoadBalancing_Name(spec.load_balancing() == S::LOAD_BALANCING_UNSPECIFIED ? S::RANDOM : spec.load_balancing())},
        {"Session affinity:", spec.session_affinity() == S::CLIENT_IP
                                  ? absl::StrCat("ClientIP, timeout ", spec.has_session_affinity_timeout() ? spec.session_affinity_timeout().seconds() : 10800, "s")
                                  : "None"},
        {"External traffic policy:", spec.external_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
        {"Internal traffic policy:", spec.internal_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
        {"Selector:", Join(spec.selector())},
    };
    if (spec.type() == S::EXTERNAL_NAME) head.push_back({"External name:", spec.external_name()});
    std::cout << FormatTable(head);

    std::vector<std::vector<std::string>> ports = {{"  NAME", "PROTOCOL", "PORT", "TARGET", "NODE-PORT"}};
    for (const v1::ServicePort& p : spec.ports()) {
      std::string target = absl::StrCat(p.port());
      if (p.target_case() == v1::ServicePort::kTargetPort) target = absl::StrCat(p.target_port());
      if (p.target_case() == v1::ServicePort::kTargetPortName) target = p.target_port_name() + " (named)";
      ports.push_back({"  " + (p.name().empty() ? "<unnamed>" : p.name()),
                       v1::Protocol_Name(p.protocol() == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p.protocol()),
                       absl::StrCat(p.port()), target, p.node_port() ? absl::StrCat(p.node_port()) : "-"});
    }
    std::cout << "Ports:\n" << FormatTable(ports);

    // Endpoints: from the slices of the service, or from selected workloads.
    std::vector<std::vector<std::string>> eps = {
        {"  FROM", "ADDRESSES", "PORTS", "READY", "SERVING", "TERMINATING", "WEIGHT", "NODE", "ZONE"}};
    auto add = [&](const std::string& from, const google::protobuf::RepeatedPtrField<std::string>& addrs,
                   const google::protobuf::RepeatedPtrField<v1::EndpointPort>& eports,
                   const v1::EndpointConditions& c, bool has_weight, uint32_t weight, const std::string& node,
                   const std::string& zone) {
      const bool ready = !c.has_ready() || c.ready();
      const bool serving = c.has_serving() ? c.serving() : ready;
      std::vector<std::string> pl;
      for (const v1::EndpointPort& p : eports) pl.push_back(absl::StrCat(p.name().empty() ? "" : p.name() + ":", p.port()));
      eps.push_back({"  " + from, List(addrs), pl.empty() ? "<none>" : absl::StrJoin(pl, ","), ready ? "true" : "false",
                     serving ? "true" : "false", c.has_terminating() && c.terminating() ? "true" : "false",
                     has_weight ? absl::StrCat(weight) : "1", node.empty() ? "-" : node, zone.empty() ? "-" : zone});
    };
    if (spec.selector().empty()) {
      std::vector<v1::Resource> slices;
      if (int rc = List(v1::ENDPOINT_SLICE, ns, &slices); rc != kExitOk) return rc;
      for (const v1::Resource& s : slices) {
        const v1::EndpointSlice& es = s.endpoint_slice();
        if (es.service_name() != m.name()) continue;
        for (const v1::Endpoint& e : es.endpoints()) {
          add("endpointslice/" + es.metadata().name(), e.addresses(), es.ports(), e.conditions(), e.has_weight(), e.weight(),
              e.node_name(), e.zone());
        }
      }
    } else {
      std::vector<v1::Resource> workloads;
      if (int rc = List(v1::WORKLOAD, ns, &workloads); rc != kExitOk) return rc;
      for (const v1::Resource& w : workloads) {
        const v1::Workload& wl = w.workload();
        bool match = true;
        for (const auto& [k, v] : spec.selector()) {
          auto it = wl.metadata().labels().find(k);
          match &= it != wl.metadata().labels().end() && it->second == v;
        }
        if (match) {
          add("workload/" + wl.metadata().name(), wl.addresses(), wl.ports(), wl.conditions(), wl.has_weight(),
              wl.weight(), wl.node_name(), wl.zone());
        }
      }
    }
    std::cout << "Endpoints:";
    if (eps.size() == 1) {
      std::cout << " <none>\n";
    } else {
      std::cout << "\n" << FormatTable(eps);
    }

    v1::GetRulesetResponse rules;
    grpc::Status s = Call(&v1::Proxy::Stub::GetRuleset, v1::GetRulesetRequest(), &rules);
    if (!s.ok()) return Report(s, server_);
    const std::string objects = RulesetFor(rules.text(), m.namespace_(), m.name());
    std::cout << "nftables (table " << rules.table() << "):";
    if (objects.empty()) {
      std::cout << " <none> (nothing installed for this service" << (rules.text().empty() ? "; nothing committed yet" : "")
                << ")\n";
    } else {
      std::cout << "\n" << objects;
    }
    return kExitOk;
  }

  int Explain(const Options& o) {
    if (!o.positional.empty()) return Usage("explain", "takes no arguments");
    v1::GetRulesetResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::GetRuleset, v1::GetRulesetRequest(), &resp);
    if (!s.ok()) return Report(s, server_);
    if (resp.text().empty()) {
      std::cout << "# nothing committed by this server run yet (table " << resp.table() << ")\n";
    } else {
      std::cout << resp.text();
    }
    return kExitOk;
  }

  int Watch(const Options& o) {
    v1::WatchRequest req;
    if (o.positional.size() > 1) return Usage("watch", "expected at most one KIND");
    if (o.positional.size() == 1) {
      v1::Kind kind;
      if (!ParseKind(o.positional[0], &kind)) return Usage("watch", "unknown KIND " + o.positional[0]);
      req.add_kinds(kind);
    }
    if (!o.all_namespaces) req.set_namespace_(o.ns);
    if (!o.since.empty()) {
      uint64_t since = 0;
      if (!absl::SimpleAtoi(o.since, &since)) return Usage("watch", "--since: expected a revision number");
      req.set_since_revision(since);
    }
    const std::string output = o.output.empty() ? "table" : o.output;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader = stub_->Watch(&ctx, req);
    if (output == "table") {
      std::cout << absl::StrFormat("%-8s   %-6s   %-13s   %-12s   %s\n", "REVISION", "EVENT", "KIND", "NAMESPACE", "NAME")
                << std::flush;
    }
    v1::WatchEvent e;
    bool first = true;
    while (reader->Read(&e)) {
      if (e.type() == v1::WatchEvent::BOOKMARK) {
        std::cerr << "# up to date at revision " << e.revision() << "; watching for changes\n";
        continue;
      }
      if (output == "json") {
        std::cout << MessageJson(e, true);
      } else if (output == "yaml") {
        std::cout << (first ? "" : "---\n") << "type: " << v1::WatchEvent::Type_Name(e.type()) << "\nrevision: "
                  << e.revision() << "\nresource:\n";
        std::string doc = ResourceYaml(e.resource());
        for (absl::string_view line : absl::StrSplit(doc, '\n')) {
          if (!line.empty()) std::cout << "  " << line << "\n";
        }
      } else {
        const v1::ObjectMeta& m = MetaOfResource(e.resource());
        std::cout << absl::StrFormat("%-8d   %-6s   %-13s   %-12s   %s\n", e.revision(),
                                     v1::WatchEvent::Type_Name(e.type()), KindWord(KindOfResource(e.resource())),
                                     m.namespace_(), m.name());
      }
      std::cout << std::flush;
      first = false;
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return Report(s, server_);
    return kExitOk;
  }

  int Status(const Options& o) {
    if (!o.positional.empty()) return Usage("status", "takes no arguments");
    v1::StatusResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Status, v1::StatusRequest(), &resp);
    if (!s.ok()) return Report(s, server_);
    if (o.output == "json") {
      std::cout << MessageJson(resp);
      return kExitOk;
    }
    if (o.output == "yaml") {
      std::cout << MessageYaml(resp);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows = {
        {"Server:", server_},
        {"Server version:", resp.version()},
        {"Node:", resp.node_name()},
        {"Revision:", absl::StrCat(resp.revision())},
        {"Services:", absl::StrCat(resp.services())},
        {"EndpointSlices:", absl::StrCat(resp.endpoint_slices())},
        {"Workloads:", absl::StrCat(resp.workloads())}};
    if (resp.has_last_sync_time()) {
      const double ms = resp.last_sync_duration().seconds() * 1e3 + resp.last_sync_duration().nanos() / 1e6;
      rows.push_back({"Last sync:", When(resp.last_sync_time())});
      rows.push_back({"Last sync duration:", absl::StrFormat("%.1f ms", ms)});
    } else {
      rows.push_back({"Last sync:", "<none> (no commit in this server run)"});
    }
    rows.push_back({"Last error:", resp.last_error().empty() ? "<none>" : resp.last_error()});
    std::cout << FormatTable(rows);
    return kExitOk;
  }

  int Version(const Options& o) {
    if (!o.positional.empty()) return Usage("version", "takes no arguments");
    std::cout << "Client version: " << NFTPROXY_VERSION << "\n";
    if (o.client_only) return kExitOk;
    v1::StatusResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::Status, v1::StatusRequest(), &resp, std::chrono::seconds(5));
    if (!s.ok()) return Report(s, server_);
    std::cout << "Server version: " << resp.version() << "\n";
    return kExitOk;
  }

 private:
  // One unary call with a deadline.
  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (v1::Proxy::Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
                    Resp* resp, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    return (stub_.get()->*method)(&ctx, req, resp);
  }

  static const char* DryRun(const Options& o) { return o.dry_run ? " (dry run)" : ""; }

  static std::string Namespace(const Options& o) { return o.ns.empty() ? "default" : o.ns; }

  static v1::ResourceRef Ref(v1::Kind kind, const std::string& ns, const std::string& name) {
    v1::ResourceRef ref;
    ref.set_kind(kind);
    ref.set_namespace_(ns);
    ref.set_name(name);
    return ref;
  }

  static std::string List(const google::protobuf::RepeatedPtrField<std::string>& items) {
    return items.empty() ? "<none>" : absl::StrJoin(items, ", ");
  }

  static std::string Join(const google::protobuf::Map<std::string, std::string>& m) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : m) kv.push_back(k + "=" + v);
    std::sort(kv.begin(), kv.end());
    return kv.empty() ? "<none>" : absl::StrJoin(kv, ", ");
  }

  static std::string When(const google::protobuf::Timestamp& ts) {
    if (ts.seconds() == 0 && ts.nanos() == 0) return "<unknown>";
    const absl::Time t = ToTime(ts);
    return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()), " (", Age(absl::Now() - t), " ago)");
  }

  // Reads -f PATH (warnings to stderr), filling in -n for documents without
  // a namespace.
  int Load(const Options& o, const std::string& command, std::vector<ManifestDoc>* docs) {
    if (o.file.empty()) return Usage(command, "-f PATH is required");
    std::vector<std::string> warnings;
    absl::StatusOr<std::vector<ManifestDoc>> loaded = LoadManifests(o.file, &warnings);
    for (const std::string& w : warnings) std::cerr << "warning: " << w << "\n";
    if (!loaded.ok()) {
      std::cerr << "error: " << loaded.status().message() << "\n";
      return kExitBadInput;
    }
    for (ManifestDoc& d : *loaded) {
      v1::ObjectMeta* m = nullptr;
      switch (d.resource.kind_case()) {
        case v1::Resource::kService: m = d.resource.mutable_service()->mutable_metadata(); break;
        case v1::Resource::kEndpointSlice: m = d.resource.mutable_endpoint_slice()->mutable_metadata(); break;
        default: m = d.resource.mutable_workload()->mutable_metadata(); break;
      }
      if (m->namespace_().empty() && !o.ns.empty()) m->set_namespace_(o.ns);
    }
    *docs = std::move(*loaded);
    return kExitOk;
  }

  int GetOne(v1::Kind kind, const std::string& ns, const std::string& name, v1::Resource* out) {
    v1::GetRequest req;
    *req.mutable_ref() = Ref(kind, ns, name);
    grpc::Status s = Call(&v1::Proxy::Stub::Get, req, out);
    return s.ok() ? kExitOk : Report(s, server_);
  }

  int List(v1::Kind kind, const std::string& ns, std::vector<v1::Resource>* out) {
    v1::ListRequest req;
    req.set_kind(kind);
    req.set_namespace_(ns);
    v1::ListResponse resp;
    grpc::Status s = Call(&v1::Proxy::Stub::List, req, &resp);
    if (!s.ok()) return Report(s, server_);
    out->assign(resp.resources().begin(), resp.resources().end());
    return kExitOk;
  }

  const std::string server_;
  std::unique_ptr<v1::Proxy::Stub> stub_;
};

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"apply", "apply -f PATH [-n NS] [--source NAME] [--dry-run]",
       "create or update the resources in PATH",
       "Creates or replaces every resource in PATH, all or nothing. PATH is a file, a directory (its *.yaml,\n"
       "*.yml and *.json files) or - for standard input; a file may hold several documents separated by ---.\n"
       "Documents are nftproxy's own resources (kind: Service, EndpointSlice, Workload) or Kubernetes' own\n"
       "v1 Service, v1 Endpoints and discovery.k8s.io/v1 EndpointSlice (also inside a kind: List).\n"
       "A resource owned by another source (metadata.source) is refused unless --source names that owner.\n\n"
       "Examples:\n"
       "  nftproxy apply -f web.yaml\n"
       "  kubectl get svc,endpointslices -n shop -o yaml | nftproxy apply -f -\n"
       "  nftproxy apply -f manifests/ --dry-run",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Apply},
      {"delete", "delete (-f PATH | KIND NAME) [-n NS] [--source NAME]",
       "delete the resources named in PATH, or one resource",
       "Deletes, all or nothing. KIND is service, endpointslice (endpoints) or workload. A resource owned\n"
       "by another source is refused unless --source names that owner.\n\n"
       "Examples:\n"
       "  nftproxy delete service web -n shop\n"
       "  nftproxy delete -f web.yaml",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Delete},
      {"get", "get KIND [NAME] [-n NS | -A] [-o table|wide|yaml|json]",
       "list resources, or show one",
       "KIND is services (svc), endpoints (endpointslices, eps) or workloads (wl). Without -n, lists cover\n"
       "every namespace; a NAME is looked up in -n (default \"default\"). yaml and json print manifests that\n"
       "`apply -f` reads back.\n\n"
       "Examples:\n"
       "  nftproxy get services\n"
       "  nftproxy get endpoints -n shop -o wide\n"
       "  nftproxy get service web -o yaml > web.yaml",
       {"ns", "all", "output"}, {"table", "wide", "yaml", "json"}, &Client::Get},
      {"describe", "describe service NAME [-n NS]",
       "a service: its spec, its endpoints and the nftables objects that implement it",
       "Shows the service's fields, every endpoint with its conditions and weight (from its EndpointSlices,\n"
       "or from the workloads its selector picks), and the installed chains and map elements for it.\n\n"
       "Example:\n"
       "  nftproxy describe service web -n shop",
       {"ns"}, {}, &Client::Describe},
      {"diff", "diff -f PATH [-n NS] [--source NAME]",
       "show what `apply -f PATH` would change, without changing anything",
       "The server validates the change (a dry run); each resource that would change is shown as a unified\n"
       "diff of its YAML, live against what would be stored. Exit status: 0 no differences, 1 differences,\n"
       "2 invalid input or a change the server would refuse, 3 server unreachable.\n\n"
       "Example:\n"
       "  nftproxy diff -f web.yaml",
       {"file", "ns", "source"}, {}, &Client::Diff},
      {"sync", "sync -f PATH --source NAME [-n NS] [--dry-run]",
       "make the resources of one source exactly those in PATH",
       "Replaces everything source NAME owns, all or nothing: resources of NAME missing from PATH are\n"
       "deleted, the others created or updated; other sources' resources are left alone, and one of theirs\n"
       "in PATH is a conflict. `-f /dev/null` deletes everything NAME owns.\n\n"
       "Example:\n"
       "  nftproxy sync -f /etc/nftproxy/services.d --source alice",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Sync},
      {"explain", "explain", "print the installed nftables ruleset as nft text",
       "The table nftproxy owns, as the server last committed it: the rules and elements `nft list table`\n"
       "prints (nft lists chains, maps and elements in the kernel's order, which may differ).\n\n"
       "Example:\n"
       "  nftproxy explain",
       {}, {}, &Client::Explain},
      {"watch", "watch [KIND] [-n NS] [--since REVISION] [-o table|yaml|json]",
       "stream changes as they are committed",
       "Prints the current resources, then every change as the server commits it, each with its revision,\n"
       "until interrupted. With --since, starts with the changes after that revision instead (a watch that\n"
       "ended can resume from the last revision it printed). json prints one WatchEvent per line.\n\n"
       "Examples:\n"
       "  nftproxy watch services -n shop\n"
       "  nftproxy watch --since 42 -o json",
       {"ns", "all", "since", "output"}, {"table", "yaml", "json"}, &Client::Watch},
      {"status", "status [-o yaml|json]", "server version, object counts, last sync time and duration, last error",
       "Example:\n"
       "  nftproxy status",
       {"output"}, {"text", "yaml", "json"}, &Client::Status},
      {"version", "version [--client]", "client and server versions",
       "Example:\n"
       "  nftproxy version",
       {"client"}, {}, &Client::Version},
  };
  return commands;
}

std::string MainUsage() {
  std::string out =
      "nftproxy: a service proxy on nftables, driven over gRPC.\n\n"
      "Usage: nftproxy [--server ADDR] <command> [flags]\n\n"
      "Server:\n"
      "  serve                      run the server (see nftproxy serve --help)\n\n"
      "Client commands:\n";
  for (const Command& c : Commands()) absl::StrAppend(&out, absl::StrFormat("  %-10s %s\n", c.name, c.summary));
  absl::StrAppend(&out,
                  "\nGlobal flags:\n"
                  "  --server ADDR    unix:///path or tcp://host:port (default ", kDefaultServer, ")\n"
                  "  -h, --help       help for a command: nftproxy <command> --help\n\n"
                  "Exit status: 0 done, 1 refused by the server (diff: differences found), 2 invalid input,\n"
                  "3 server unreachable.\n\n"
                  "Examples:\n"
                  "  nftproxy apply -f web.yaml\n"
                  "  nftproxy get services -o wide\n"
                  "  nftproxy describe service web\n");
  return out;
}

std::string CommandUsage(const Command& c) {
  std::string out = absl::StrCat("Usage: nftproxy ", c.synopsis, "\n\n", c.summary, ".\n\n", c.details, "\n\nFlags:\n");
  for (const std::string& key : c.flags) {
    for (const FlagDoc& d : kFlagDocs) {
      if (key != d.key) continue;
      const std::string help =
          d.help ? d.help : absl::StrCat("output format: ", absl::StrJoin(c.formats, ", "), " (default ", c.formats[0], ")");
      absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", d.spelling, help));
    }
  }
  absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", "--server ADDR", "unix:///path or tcp://host:port"),
                  absl::StrFormat("  %-24s %s\n", "-h, --help", "this help"));
  return out;
}

}  // namespace

int RunClient(const std::string& command, const std::vector<std::string>& args) {
  if (command == "help") {
    for (const Command& c : Commands()) {
      if (!args.empty() && args[0] == c.name) {
        std::cout << CommandUsage(c);
        return kExitOk;
      }
    }
    std::cout << MainUsage();
    return args.empty() || args[0] == "--help" ? kExitOk : kExitBadInput;
  }
  const Command* cmd = nullptr;
  for (const Command& c : Commands()) {
    if (command == c.name) cmd = &c;
  }
  if (cmd == nullptr) {
    std::cerr << "error: unknown command \"" << command << "\"\n\n" << MainUsage();
    return kExitBadInput;
  }
  Options o;
  std::vector<std::string> positional;
  if (absl::Status s = ParseFlags(args, Specs(&o), &positional); !s.ok()) return Usage(command, std::string(s.message()));
  if (o.help) {
    std::cout << CommandUsage(*cmd);
    return kExitOk;
  }
  // Flags this command does not take are errors, not silently ignored.
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string a = args[i].substr(0, args[i].find('='));
    const std::string key = FlagKey(a);
    if (!key.empty() && std::find(cmd->flags.begin(), cmd->flags.end(), key) == cmd->flags.end()) {
      return Usage(command, absl::StrCat(command, " does not take ", a));
    }
    if (a == "--") break;
  }
  if (!o.output.empty() && std::find(cmd->formats.begin(), cmd->formats.end(), o.output) == cmd->formats.end()) {
    return Usage(command, absl::StrCat("-o ", o.output, ": expected ", absl::StrJoin(cmd->formats, ", ")));
  }
  o.positional = std::move(positional);
  Client client(o.server);
  return (client.*(cmd->run))(o);
}

}  // namespace nftproxy::client
