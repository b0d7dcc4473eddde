// get, describe, explain, watch, status, version: the commands that only
// read.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/output.h"
#include "common/grpc_status.h"

namespace nftproxy::client {
namespace {

std::string Items(const google::protobuf::RepeatedPtrField<std::string>& items) {
  return items.empty() ? "<none>" : absl::StrJoin(items, ", ");
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& m) {
  std::vector<std::string> kv;
  for (const auto& [k, v] : m) kv.push_back(k + "=" + v);
  std::sort(kv.begin(), kv.end());
  return kv.empty() ? "<none>" : absl::StrJoin(kv, ", ");
}

std::string When(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "<unknown>";
  const absl::Time t = ToTime(ts);
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()), " (", Age(absl::Now() - t), " ago)");
}

}  // namespace

Client::Client(const std::string& server) : server_(server), stub_(Connect(server)) {}

int Client::Get(const Options& o) {
  const KindInfo* kind = o.positional.empty() || o.positional.size() > 2 ? nullptr : KindByWord(o.positional[0]);
  if (kind == nullptr) {
    return Usage("get", "expected services, endpoints (endpointslices) or workloads, and optionally a NAME");
  }
  const std::string output = o.output.empty() ? "table" : o.output;
  std::vector<v1::Resource> items;
  const bool one = o.positional.size() == 2;
  if (one) {
    v1::Resource r;
    if (int rc = GetOne(Key{kind->kind, Namespace(o), o.positional[1]}, &r); rc != kExitOk) return rc;
    items.push_back(r);
  } else if (int rc = List(kind->kind, o.all_namespaces ? "" : o.ns, &items); rc != kExitOk) {
    return rc;
  }
  if (output == "yaml") {
    std::cout << ResourcesYaml(items);
  } else if (output == "json") {
    std::cout << (one ? ResourceJson(items[0]) : ResourcesJson(items));
  } else if (items.empty()) {
    std::cerr << "No resources found" << (o.ns.empty() || o.all_namespaces ? "" : " in " + o.ns + " namespace") << ".\n";
  } else {
    std::vector<std::vector<std::string>> rows = {TableHeader(kind->kind, output == "wide")};
    const absl::Time now = absl::Now();
    for (const v1::Resource& r : items) rows.push_back(TableRow(r, output == "wide", now));
    std::cout << FormatTable(rows);
  }
  return kExitOk;
}

int Client::Describe(const Options& o) {
  const KindInfo* kind = o.positional.size() == 2 ? KindByWord(o.positional[0]) : nullptr;
  if (kind == nullptr) {
    return Usage("describe", "expected service NAME");
  }
  if (kind->kind != v1::SERVICE) {
    return Usage("describe", absl::StrCat("describe shows services; for a ", kind->word, " use: nftproxy get ",
                                          kind->word, " ", o.positional[1], " -o yaml"));
  }
  const std::string ns = Namespace(o);
  v1::Resource r;
  if (int rc = GetOne(Key{v1::SERVICE, ns, o.positional[1]}, &r); rc != kExitOk) return rc;
  const v1::Service& svc = r.service();
  const v1::ServiceSpec& spec = svc.spec();
  const v1::ObjectMeta& m = svc.metadata();
  using S = v1::ServiceSpec;
  std::vector<std::vector<std::string>> head = {
      {"Name:", m.name()},
      {"Namespace:", m.namespace_()},
      {"Source:", m.source().empty() ? "<manual>" : m.source()},
      {"Labels:", Labels(m.labels())},
      {"Resource version:", absl::StrCat(m.resource_version())},
      {"Created:", When(m.create_time())},
      {"Updated:", When(m.update_time())},
      {"Type:", TableRow(r, false, absl::Now())[2]},
      {"Cluster IPs:", Items(spec.cluster_ips())},
      {"External IPs:", Items(spec.external_ips())},
      {"Load-balancer IPs:", Items(spec.load_balancer_ips())},
      {"Load-balancer source ranges:", Items(spec.load_balancer_source_ranges())},
      {"Load balancing:", S::LoadBalancing_Name(spec.load_balancing() == S::LOAD_BALANCING_UNSPECIFIED ? S::RANDOM : spec.load_balancing())},
      {"Session affinity:", spec.session_affinity() == S::CLIENT_IP
                                ? absl::StrCat("ClientIP, timeout ", AffinityTimeoutSeconds(spec), "s")
                                : "None"},
      {"External traffic policy:", spec.external_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
      {"Internal traffic policy:", spec.internal_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
      {"Selector:", Labels(spec.selector())},
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
    const bool ready = EndpointReady(c);
    const bool serving = c.has_serving() ? c.serving() : ready;
    std::vector<std::string> pl;
    for (const v1::EndpointPort& p : eports) pl.push_back(absl::StrCat(p.name().empty() ? "" : p.name() + ":", p.port()));
    eps.push_back({"  " + from, Items(addrs), pl.empty() ? "<none>" : absl::StrJoin(pl, ","), ready ? "true" : "false",
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
      if (SelectorMatches(spec.selector(), wl.metadata().labels())) {
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
  absl::Status s = Call(&v1::Proxy::Stub::GetRuleset, v1::GetRulesetRequest(), &rules);
  if (!s.ok()) return Report(s);
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

int Client::Explain(const Options& o) {
  if (!o.positional.empty()) return Usage("explain", "takes no arguments");
  v1::GetRulesetResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::GetRuleset, v1::GetRulesetRequest(), &resp);
  if (!s.ok()) return Report(s);
  if (resp.text().empty()) {
    std::cout << "# nothing committed by this server run yet (table " << resp.table() << ")\n";
  } else {
    std::cout << resp.text();
  }
  return kExitOk;
}

int Client::Watch(const Options& o) {
  v1::WatchRequest req;
  if (o.positional.size() > 1) return Usage("watch", "expected at most one KIND");
  if (o.positional.size() == 1) {
    const KindInfo* kind = KindByWord(o.positional[0]);
    if (kind == nullptr) return Usage("watch", "unknown KIND " + o.positional[0]);
    req.add_kinds(kind->kind);
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
      const v1::ObjectMeta& m = MetaOf(e.resource());
      std::cout << absl::StrFormat("%-8d   %-6s   %-13s   %-12s   %s\n", e.revision(),
                                   v1::WatchEvent::Type_Name(e.type()), KindName(KindOf(e.resource())),
                                   m.namespace_(), m.name());
    }
    std::cout << std::flush;
    first = false;
  }
  absl::Status s = FromGrpcStatus(reader->Finish());
  if (!s.ok()) return Report(s);
  return kExitOk;
}

int Client::Status(const Options& o) {
  if (!o.positional.empty()) return Usage("status", "takes no arguments");
  v1::StatusResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Status, v1::StatusRequest(), &resp);
  if (!s.ok()) return Report(s);
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

int Client::Version(const Options& o) {
  if (!o.positional.empty()) return Usage("version", "takes no arguments");
  std::cout << "Client version: " << NFTPROXY_VERSION << "\n";
  if (o.client_only) return kExitOk;
  v1::StatusResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Status, v1::StatusRequest(), &resp, std::chrono::seconds(5));
  if (!s.ok()) return Report(s);
  std::cout << "Server version: " << resp.version() << "\n";
  return kExitOk;
}

int Client::GetOne(const Key& key, v1::Resource* out) {
  v1::GetRequest req;
  *req.mutable_ref() = RefOf(key);
  absl::Status s = Call(&v1::Proxy::Stub::Get, req, out);
  return s.ok() ? kExitOk : Report(s);
}

int Client::List(v1::Kind kind, const std::string& ns, std::vector<v1::Resource>* out) {
  v1::ListRequest req;
  req.set_kind(kind);
  req.set_namespace_(ns);
  v1::ListResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::List, req, &resp);
  if (!s.ok()) return Report(s);
  out->assign(resp.resources().begin(), resp.resources().end());
  return kExitOk;
}

}  // namespace nftproxy::client
