// get, describe, explain, watch, status, version: the commands that only
// read.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

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
#include "client/printer.h"
#include "client/selector.h"
#include "common/address.h"
#include "common/errors.h"
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

// What `get` takes as KIND: one kind word, several joined by commas
// (`svc,eps`), or `all` (every kind). Null after printing the usage error.
bool ParseKinds(const std::string& word, std::vector<const KindInfo*>* kinds) {
  if (word == "all") {
    for (const KindInfo& k : Kinds()) kinds->push_back(&k);
    return true;
  }
  for (absl::string_view w : absl::StrSplit(word, ',')) {
    const KindInfo* k = KindByWord(w);
    if (k == nullptr) return false;
    if (std::find(kinds->begin(), kinds->end(), k) == kinds->end()) kinds->push_back(k);
  }
  return !kinds->empty();
}

Client::Client(const Options& o, std::shared_ptr<grpc::Channel> channel)
    : server_(o.server),
      call_timeout_(o.call_timeout),
      connect_timeout_(o.connect_timeout),
      channel_(std::move(channel)),
      stub_(v1::Proxy::NewStub(channel_)) {}

int Client::Connect() {
  absl::Status s = WaitConnected(channel_.get(), stub_.get(), connect_timeout_);
  return s.ok() ? kExitOk : Report(s);
}

std::map<std::string, uint64_t> Client::Connections(const std::string& ns, const std::string& service,
                                                    bool* enabled, v1::GetCountersResponse* raw) {
  v1::GetCountersRequest req;
  req.set_namespace_(ns);
  req.set_service(service);
  v1::GetCountersResponse resp;
  std::map<std::string, uint64_t> out;
  *enabled = Call(&v1::Proxy::Stub::GetCounters, req, &resp).ok() && resp.enabled();
  for (const v1::PortCounter& p : resp.ports()) {
    out[absl::StrCat(p.namespace_(), "/", p.service(), "/", v1::Protocol_Name(p.protocol()), "/", p.port())] =
        p.connections();
  }
  if (raw != nullptr) *raw = std::move(resp);
  return out;
}

int Client::Get(const Options& o) {
  std::vector<const KindInfo*> kinds;
  if (o.positional.empty() || !ParseKinds(o.positional[0], &kinds)) {
    return Usage("get",
                 "expected services, endpoints (endpointslices) or workloads (several joined by commas, or all), "
                 "and optionally NAMEs");
  }
  const std::vector<std::string> names(o.positional.begin() + 1, o.positional.end());
  absl::StatusOr<LabelSelector> selector = ParseLabelSelector(o.selector);
  if (!selector.ok()) return Usage("get", std::string(selector.status().message()));
  if (!names.empty() && !o.selector.empty()) return Usage("get", "give NAMEs or -l SELECTOR, not both");
  PrintOptions po;
  po.format = o.output.empty() ? "table" : o.output;
  po.no_headers = o.no_headers;
  po.several_kinds = kinds.size() > 1;
  po.single = kinds.size() == 1 && names.size() == 1;
  // -o wide of services: new connections per service (all its ports), from
  // the kernel's counters, read once before the listing.
  std::map<std::string, uint64_t> per_service;
  bool counted = false;
  const bool wide_services = po.format == "wide" && std::any_of(kinds.begin(), kinds.end(), [](const KindInfo* k) {
                               return k->kind == v1::SERVICE;
                             });
  if (wide_services) {
    po.connections = [&per_service, &counted](const std::string& ns, const std::string& name) -> std::string {
      if (!counted) return "-";
      auto it = per_service.find(ns + "/" + name);
      return it == per_service.end() ? "0" : absl::StrCat(it->second);
    };
  }
  absl::StatusOr<std::unique_ptr<Printer>> printer = NewPrinter(po, &std::cout);
  if (!printer.ok()) return Usage("get", std::string(printer.status().message()));
  Printer& p = **printer;
  if (int rc = Connect(); rc != kExitOk) return rc;
  if (wide_services) {
    for (const auto& [key, n] : Connections(o.all_namespaces ? "" : o.ns, "", &counted)) {
      per_service[key.substr(0, key.find('/', key.find('/') + 1))] += n;
    }
  }
  int missing = kExitOk;
  for (const KindInfo* kind : kinds) {
    if (!names.empty()) {
      for (const std::string& name : names) {
        v1::GetRequest req;
        *req.mutable_ref() = RefOf(Key{kind->kind, Namespace(o), name});
        v1::Resource r;
        absl::Status s = Call(&v1::Proxy::Stub::Get, req, &r);
        if (absl::IsNotFound(s)) {
          // Like kubectl: the others are still shown, the command fails.
          if (!o.ignore_not_found) missing = Report(s);
          continue;
        }
        if (!s.ok()) return Report(s);
        p.Add(r);
      }
      p.Flush();
      continue;
    }
    v1::ListRequest req;
    req.set_kind(kind->kind);
    req.set_namespace_(o.all_namespaces ? "" : o.ns);
    absl::Status s = ListPages(stub_.get(), req, call_timeout_, [&](const v1::ListResponse& page) {
      for (const v1::Resource& r : page.resources()) {
        if (selector->Matches(MetaOf(r).labels())) p.Add(r);
      }
      p.Flush();
      return absl::OkStatus();
    });
    if (!s.ok()) return Report(s);
  }
  p.Finish();
  if (p.count() == 0 && p.SilentWhenEmpty() && names.empty()) {
    std::cerr << "No resources found" << (o.ns.empty() || o.all_namespaces ? "" : " in " + o.ns + " namespace") << ".\n";
  }
  return missing;
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
  if (int rc = Connect(); rc != kExitOk) return rc;
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
      {"Load balancing:", LoadBalancingName(spec)},
      {"Session affinity:", spec.session_affinity() == S::CLIENT_IP
                                ? absl::StrCat("ClientIP, timeout ", AffinityTimeoutSeconds(spec), "s")
                                : "None"},
      {"External traffic policy:", spec.external_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
      {"Internal traffic policy:", spec.internal_traffic_policy() == S::LOCAL ? "Local" : "Cluster"},
      {"Selector:", Labels(spec.selector())},
  };
  if (spec.type() == S::EXTERNAL_NAME) head.push_back({"External name:", spec.external_name()});
  std::cout << FormatTable(head);

  // New connections per port, counted in the kernel (serve --kernel-counters).
  bool counted = false;
  v1::GetCountersResponse counters;
  const std::map<std::string, uint64_t> conns = Connections(m.namespace_(), m.name(), &counted, &counters);
  std::vector<std::vector<std::string>> ports = {{"  NAME", "PROTOCOL", "PORT", "TARGET", "NODE-PORT", "CONNECTIONS"}};
  for (const v1::ServicePort& p : spec.ports()) {
    std::string target = absl::StrCat(p.port());
    if (p.target_case() == v1::ServicePort::kTargetPort) target = absl::StrCat(p.target_port());
    if (p.target_case() == v1::ServicePort::kTargetPortName) target = p.target_port_name() + " (named)";
    const std::string proto = v1::Protocol_Name(p.protocol() == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p.protocol());
    auto c = conns.find(absl::StrCat(m.namespace_(), "/", m.name(), "/", proto, "/", p.port()));
    ports.push_back({"  " + (p.name().empty() ? "<unnamed>" : p.name()), proto, absl::StrCat(p.port()), target,
                     p.node_port() ? absl::StrCat(p.node_port()) : "-",
                     !counted ? "-" : c == conns.end() ? "0" : absl::StrCat(c->second)});
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
  // The namespace's slices or workloads page by page: only this service's
  // endpoints are kept.
  if (spec.selector().empty()) {
    const int rc = List(v1::ENDPOINT_SLICE, ns, [&](const v1::Resource& s) {
      const v1::EndpointSlice& es = s.endpoint_slice();
      if (es.service_name() != m.name()) return;
      for (const v1::Endpoint& e : es.endpoints()) {
        add("endpointslice/" + es.metadata().name(), e.addresses(), es.ports(), e.conditions(), e.has_weight(), e.weight(),
            e.node_name(), e.zone());
      }
    });
    if (rc != kExitOk) return rc;
  } else {
    const int rc = List(v1::WORKLOAD, ns, [&](const v1::Resource& w) {
      const v1::Workload& wl = w.workload();
      if (SelectorMatches(spec.selector(), wl.metadata().labels())) {
        add("workload/" + wl.metadata().name(), wl.addresses(), wl.ports(), wl.conditions(), wl.has_weight(),
            wl.weight(), wl.node_name(), wl.zone());
      }
    });
    if (rc != kExitOk) return rc;
  }
  std::cout << "Endpoints:";
  if (eps.size() == 1) {
    std::cout << " <none>\n";
  } else {
    std::cout << "\n" << FormatTable(eps);
  }
  // New connections per endpoint of each port (serve --endpoint-counters):
  // the endpoints the kernel has counters for, which are the ready ones.
  if (counted && counters.endpoint_counters()) {
    std::vector<std::vector<std::string>> per = {{"  PORT", "ENDPOINT", "CONNECTIONS"}};
    for (const v1::PortCounter& p : counters.ports()) {
      for (const v1::EndpointCounter& e : p.endpoints()) {
        per.push_back({absl::StrCat("  ", p.port(), "/", v1::Protocol_Name(p.protocol())),
                       JoinHostPort(e.address(), e.port()), absl::StrCat(e.connections())});
      }
    }
    std::cout << "Connections per endpoint:";
    if (per.size() == 1) {
      std::cout << " <none>\n";
    } else {
      std::cout << "\n" << FormatTable(per);
    }
  }

  // Only this service's part of the ruleset: small whatever the table's size.
  v1::GetRulesetRequest only;
  only.set_namespace_(m.namespace_());
  only.set_service(m.name());
  v1::GetRulesetResponse rules;
  absl::Status s = Call(&v1::Proxy::Stub::GetRuleset, only, &rules);
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
  if (int rc = Connect(); rc != kExitOk) return rc;
  // Streamed and printed a piece at a time: memory stays small whatever the
  // table's size.
  grpc::ClientContext ctx;
  SetDeadline(&ctx, call_timeout_);
  v1::GetRulesetRequest req;
  req.set_kernel(o.kernel);
  std::unique_ptr<grpc::ClientReader<v1::GetRulesetResponse>> reader = stub_->StreamRuleset(&ctx, req);
  v1::GetRulesetResponse piece;
  std::string table;
  bool printed = false;
  int differences = 0;
  while (reader->Read(&piece)) {
    if (!piece.table().empty()) table = piece.table();
    if (piece.kernel_compared()) {
      differences = piece.kernel_differences_size();
      if (differences == 0) {
        std::cout << "# the kernel's table " << piece.table() << " is the ruleset below\n";
      } else {
        std::cout << "# the kernel's table " << piece.table() << " differs from the ruleset below in " << differences
                  << (differences == 1 ? " place" : " places") << ":\n";
        for (const std::string& line : piece.kernel_differences()) std::cout << "#   " << line << "\n";
      }
    }
    printed |= !piece.text().empty();
    std::cout << piece.text();
  }
  if (absl::Status s = FromGrpcStatus(reader->Finish()); !s.ok()) return Report(s);
  if (!printed) std::cout << "# nothing committed by this server run yet (table " << table << ")\n";
  return differences > 0 ? kExitRefused : kExitOk;
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
  if (int rc = Connect(); rc != kExitOk) return rc;
  if (output == "table") {
    std::cout << absl::StrFormat("%-8s   %-6s   %-13s   %-12s   %s\n", "REVISION", "EVENT", "KIND", "NAMESPACE", "NAME")
              << std::flush;
  }
  bool first = true;
  // What was printed: the revision of the last event, how many of its
  // events, and the newest BOOKMARK. A server that ends the watch because
  // this client read too slowly (ABORTED) names the revision up to which
  // everything was delivered; the watch resumes from there by itself, without
  // printing again what it printed already.
  uint64_t last_rev = 0, bookmark = 0;
  size_t at_last = 0;
  bool printed = false;
  for (bool resumed = false;; resumed = true) {
    grpc::ClientContext ctx;
    // A watch runs until interrupted, so it has no deadline; but a server that
    // sends nothing within the request timeout (not even the first page of the
    // current state) is as unreachable as one that does not connect.
    std::mutex mu;
    std::condition_variable cv;
    bool answered = false, gave_up = false;
    std::thread watchdog;
    if (call_timeout_ > absl::ZeroDuration()) {
      watchdog = std::thread([&] {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_for(lock, absl::ToChronoNanoseconds(call_timeout_), [&] { return answered; })) {
          gave_up = true;
          ctx.TryCancel();
        }
      });
    }
    auto answer = [&] {
      std::lock_guard<std::mutex> lock(mu);
      if (!answered) {
        answered = true;
        cv.notify_all();
      }
    };
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader = stub_->Watch(&ctx, req);
    // Events of last_rev printed before, which a resumed stream sends again.
    size_t skip = resumed && printed && last_rev > req.since_revision() ? at_last : 0;
    v1::WatchEvent e;
    while (reader->Read(&e)) {
      answer();
      if (e.type() == v1::WatchEvent::BOOKMARK) {
        bookmark = std::max(bookmark, e.revision());
        if (!resumed) std::cerr << "# up to date at revision " << e.revision() << "; watching for changes\n";
        continue;
      }
      if (skip > 0 && e.revision() == last_rev) {
        --skip;
        continue;
      }
      skip = 0;
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
      if (!printed || e.revision() != last_rev) at_last = 0;
      printed = true;
      last_rev = e.revision();
      ++at_last;
    }
    answer();
    if (watchdog.joinable()) watchdog.join();
    absl::Status s = FromGrpcStatus(reader->Finish());
    if (gave_up && !s.ok()) {
      s = absl::DeadlineExceededError(
          absl::StrCat("no answer within ", absl::FormatDuration(call_timeout_), " (--request-timeout)"));
    }
    if (absl::IsAborted(s)) {
      // Too slow: resume from what the server says was delivered (an older
      // server: from the last revision known complete).
      uint64_t from = std::max({req.since_revision(), bookmark, printed && last_rev > 0 ? last_rev - 1 : 0});
      if (std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s); detail && detail->resume_revision() > 0) {
        from = detail->resume_revision();
      }
      std::cerr << "# the server ended the watch: " << s.message() << "\n# resuming from revision " << from
                << "\n";
      req.set_since_revision(from);
      continue;
    }
    if (absl::IsOutOfRange(s)) {
      const int rc = Report(s);
      std::cerr << "# the watch cannot resume from there: start again with `nftproxy watch` (no --since), which "
                   "sends the current state first\n";
      return rc;
    }
    if (!s.ok()) return Report(s);
    return kExitOk;
  }
}

int Client::Status(const Options& o) {
  if (!o.positional.empty()) return Usage("status", "takes no arguments");
  if (int rc = Connect(); rc != kExitOk) return rc;
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
  rows.push_back({"Drift repairs:", resp.drift_repairs() == 0
                                        ? "0"
                                        : absl::StrCat(resp.drift_repairs(), " (last ", When(resp.last_drift_time()),
                                                       ": ", resp.last_drift(), ")")});
  // Shared store (serve --etcd-endpoints): which, and whether it is followed.
  if (!resp.shared_store().empty()) {
    rows.push_back({"Shared store:", absl::StrCat(resp.shared_store(), " (log entry ", resp.shared_log_seq(), ")")});
    rows.push_back({"  Error:", resp.shared_store_error().empty()
                                    ? "<none>"
                                    : absl::StrCat(resp.shared_store_error(), " (since ",
                                                   When(resp.shared_store_error_time()),
                                                   "; writes fail, the last state keeps serving)")});
  }
  // Appliance mode (serve --manifests DIR): each directory, and why it is not
  // applied (file, document, field) while its last good state serves.
  for (const v1::ManifestDirStatus& d : resp.manifest_dirs()) {
    rows.push_back({"Manifest dir:", absl::StrCat(d.path(), " (source ", d.source(), ")")});
    rows.push_back({"  Applied:", d.has_last_good_time()
                                      ? absl::StrCat(d.files(), " files, ", d.resources(), " resources, revision ",
                                                     d.last_sync_revision(), ", ", When(d.last_good_time()))
                                      : "<nothing yet>"});
    if (d.last_error().empty()) {
      rows.push_back({"  Error:", "<none>"});
      continue;
    }
    bool first = true;
    for (absl::string_view line : absl::StrSplit(d.last_error(), '\n')) {
      rows.push_back({first ? "  Error:" : "", std::string(line)});
      first = false;
    }
    rows.push_back({"  Error since:", absl::StrCat(When(d.last_error_time()), " (the last good state keeps serving)")});
  }
  std::cout << FormatTable(rows);
  return kExitOk;
}

int Client::Version(const Options& o) {
  if (!o.positional.empty()) return Usage("version", "takes no arguments");
  std::cout << "Client version: " << NFTPROXY_VERSION << "\n";
  if (o.client_only) return kExitOk;
  if (int rc = Connect(); rc != kExitOk) return rc;
  v1::StatusResponse resp;
  absl::Status s = Call(&v1::Proxy::Stub::Status, v1::StatusRequest(), &resp);
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

int Client::List(v1::Kind kind, const std::string& ns, const std::function<void(const v1::Resource&)>& take) {
  v1::ListRequest req;
  req.set_kind(kind);
  req.set_namespace_(ns);
  absl::Status s = ListPages(stub_.get(), req, call_timeout_, [&](const v1::ListResponse& page) {
    for (const v1::Resource& r : page.resources()) take(r);
    return absl::OkStatus();
  });
  return s.ok() ? kExitOk : Report(s);
}

}  // namespace nftproxy::client
