#include "client/cli.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/manifest.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::client {
namespace {

namespace v1 = ::nftproxy::v1;

constexpr char kDefaultServer[] = "unix:///run/nftproxy/nftproxy.sock";

struct Flags {
  std::string server = kDefaultServer;
  std::string file;
  std::string ns;
  std::string output = "table";
  bool dry_run = false;
  std::vector<std::string> positional;
};

const char kUsage[] = R"(Usage: nftproxy <command> [flags]

Server:
  serve                      run the server (see nftproxy serve --help)

Client commands (talk to the server at --server, default unix:///run/nftproxy/nftproxy.sock):
  apply -f PATH              create or update the resources in PATH (file, directory, - for stdin)
  delete -f PATH             delete the resources named in PATH
  delete KIND NAME           delete one resource (KIND: service, endpointslice, workload)
  get KIND [NAME]            list resources (-o table|yaml|json)
  explain                    print the installed nftables ruleset
  status                     server version, object counts, last sync
  version                    client version

Flags:
  --server ADDR              unix:///path or tcp://host:port
  -f, --filename PATH        manifest file, directory or -
  -n, --namespace NS         namespace (default: "default" for names, all for lists)
  -o, --output FORMAT        table, yaml or json
  --dry-run                  validate and compile, change nothing

Examples:
  nftproxy apply -f web.yaml
  nftproxy get services
  nftproxy delete service web -n default
  nftproxy explain
)";

bool ParseFlags(const std::vector<std::string>& args, Flags* f, std::string* err) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      exit(0);
    }
    if (a == "--dry-run") {
      f->dry_run = true;
      continue;
    }
    if (a.size() > 1 && a[0] == '-' && a != "-") {
      std::string v;
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        v = a.substr(eq + 1);
        a = a.substr(0, eq);
      } else if (i + 1 < args.size()) {
        v = args[++i];
      } else {
        *err = absl::StrCat(a, ": needs a value");
        return false;
      }
      if (a == "--server") f->server = v;
      else if (a == "-f" || a == "--filename") f->file = v;
      else if (a == "-n" || a == "--namespace") f->ns = v;
      else if (a == "-o" || a == "--output") f->output = v;
      else {
        *err = absl::StrCat("unknown flag ", a);
        return false;
      }
      continue;
    }
    f->positional.push_back(a);
  }
  if (f->output != "table" && f->output != "yaml" && f->output != "json" && f->output != "wide") {
    *err = absl::StrCat("-o ", f->output, ": expected table, wide, yaml or json");
    return false;
  }
  return true;
}

std::string Target(const std::string& server) {
  if (absl::StartsWith(server, "unix://")) return "unix:" + server.substr(7);
  if (absl::StartsWith(server, "tcp://")) return server.substr(6);
  return server;
}

int ReportRpc(const grpc::Status& s, const std::string& server) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::cerr << "error: cannot reach the nftproxy server at " << server << ": " << s.error_message() << "\n";
      return kExitUnreachable;
    case grpc::StatusCode::INVALID_ARGUMENT:
      std::cerr << "error: " << s.error_message() << "\n";
      return kExitBadInput;
    default:
      std::cerr << "error: " << s.error_message() << "\n";
      return kExitRefused;
  }
}

bool ParseKind(const std::string& word, v1::Kind* kind) {
  static const std::map<std::string, v1::Kind> kinds = {
      {"service", v1::SERVICE}, {"services", v1::SERVICE}, {"svc", v1::SERVICE},
      {"endpointslice", v1::ENDPOINT_SLICE}, {"endpointslices", v1::ENDPOINT_SLICE},
      {"endpoints", v1::ENDPOINT_SLICE}, {"eps", v1::ENDPOINT_SLICE},
      {"workload", v1::WORKLOAD}, {"workloads", v1::WORKLOAD}, {"wl", v1::WORKLOAD}};
  auto it = kinds.find(word);
  if (it == kinds.end()) return false;
  *kind = it->second;
  return true;
}

const v1::ObjectMeta& Meta(const v1::Resource& r) {
  switch (r.kind_case()) {
    case v1::Resource::kService: return r.service().metadata();
    case v1::Resource::kEndpointSlice: return r.endpoint_slice().metadata();
    default: return r.workload().metadata();
  }
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

void BlockStyle(YAML::Node node) {
  if (!node.IsMap() && !node.IsSequence()) return;
  node.SetStyle(YAML::EmitterStyle::Block);
  for (auto it = node.begin(); it != node.end(); ++it) BlockStyle(node.IsMap() ? it->second : *it);
}

// JSON is YAML; re-emit it in block style.
std::string JsonToYaml(const std::string& json) {
  YAML::Node node = YAML::Load(json);
  BlockStyle(node);
  YAML::Emitter e;
  e << node;
  return std::string(e.c_str()) + "\n";
}

// The resource as a manifest document: `kind` first, then its fields.
std::string ResourceDoc(const v1::Resource& r, bool yaml) {
  const google::protobuf::Message* m = nullptr;
  const char* kind = "";
  switch (r.kind_case()) {
    case v1::Resource::kService: m = &r.service(); kind = "Service"; break;
    case v1::Resource::kEndpointSlice: m = &r.endpoint_slice(); kind = "EndpointSlice"; break;
    default: m = &r.workload(); kind = "Workload"; break;
  }
  std::string body = ToJson(*m);
  // Insert "kind" at the top of the object.
  std::string json = absl::StrCat("{\n \"kind\": \"", kind, "\",", body.substr(1));
  if (body == "{}\n" || body == "{}") json = absl::StrCat("{\"kind\": \"", kind, "\"}");
  return yaml ? JsonToYaml(json) : json;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    std::cout << line << "\n";
  }
}

std::string TypeName(v1::ServiceSpec::Type t) {
  switch (t) {
    case v1::ServiceSpec::NODE_PORT: return "NodePort";
    case v1::ServiceSpec::LOAD_BALANCER: return "LoadBalancer";
    case v1::ServiceSpec::EXTERNAL_NAME: return "ExternalName";
    default: return "ClusterIP";
  }
}

std::string PortsOf(const v1::ServiceSpec& s) {
  std::vector<std::string> ports;
  for (const v1::ServicePort& p : s.ports()) {
    v1::Protocol proto = p.protocol() == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p.protocol();
    std::string target;
    if (p.target_case() == v1::ServicePort::kTargetPort) target = absl::StrCat("->", p.target_port());
    if (p.target_case() == v1::ServicePort::kTargetPortName) target = "->" + p.target_port_name();
    ports.push_back(absl::StrCat(p.port(), target, "/", v1::Protocol_Name(proto)));
  }
  return ports.empty() ? "<none>" : absl::StrJoin(ports, ",");
}

std::vector<std::string> Row(const v1::Resource& r) {
  const v1::ObjectMeta& m = Meta(r);
  switch (r.kind_case()) {
    case v1::Resource::kService: {
      const v1::ServiceSpec& s = r.service().spec();
      std::vector<std::string> ext(s.external_ips().begin(), s.external_ips().end());
      ext.insert(ext.end(), s.load_balancer_ips().begin(), s.load_balancer_ips().end());
      return {m.namespace_(), m.name(), TypeName(s.type()),
              s.cluster_ips().empty() ? "<none>" : absl::StrJoin(s.cluster_ips(), ","),
              ext.empty() ? "<none>" : absl::StrJoin(ext, ","), PortsOf(s)};
    }
    case v1::Resource::kEndpointSlice: {
      const v1::EndpointSlice& s = r.endpoint_slice();
      std::vector<std::string> eps;
      for (const v1::Endpoint& e : s.endpoints()) {
        bool ready = !e.conditions().has_ready() || e.conditions().ready();
        eps.push_back(absl::StrCat(absl::StrJoin(e.addresses(), "/"), ready ? "" : "(not ready)"));
      }
      std::vector<std::string> ports;
      for (const v1::EndpointPort& p : s.ports()) ports.push_back(absl::StrCat(p.name().empty() ? "" : p.name() + ":", p.port()));
      return {m.namespace_(), m.name(), s.service_name(), eps.empty() ? "<none>" : absl::StrJoin(eps, ","),
              ports.empty() ? "<none>" : absl::StrJoin(ports, ",")};
    }
    default: {
      const v1::Workload& w = r.workload();
      std::vector<std::string> labels;
      for (const auto& [k, v] : m.labels()) labels.push_back(k + "=" + v);
      std::sort(labels.begin(), labels.end());
      return {m.namespace_(), m.name(), absl::StrJoin(w.addresses(), ","),
              labels.empty() ? "<none>" : absl::StrJoin(labels, ","), w.node_name()};
    }
  }
}

std::vector<std::string> Header(v1::Kind kind) {
  switch (kind) {
    case v1::SERVICE: return {"NAMESPACE", "NAME", "TYPE", "CLUSTER-IPS", "EXTERNAL-IPS", "PORT(S)"};
    case v1::ENDPOINT_SLICE: return {"NAMESPACE", "NAME", "SERVICE", "ENDPOINTS", "PORTS"};
    default: return {"NAMESPACE", "NAME", "ADDRESSES", "LABELS", "NODE"};
  }
}

class Client {
 public:
  explicit Client(const Flags& f)
      : flags_(f), stub_(v1::Proxy::NewStub(grpc::CreateChannel(Target(f.server), grpc::InsecureChannelCredentials()))) {}

  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    return ctx;
  }

  int Apply(bool del) {
    if (flags_.file.empty()) {
      std::cerr << "error: " << (del ? "delete" : "apply") << " needs -f PATH\n";
      return kExitBadInput;
    }
    auto docs = LoadManifests(flags_.file);
    if (!docs.ok()) {
      std::cerr << "error: " << docs.status().message() << "\n";
      return kExitBadInput;
    }
    v1::ApplyRequest req;
    req.set_dry_run(flags_.dry_run);
    for (ManifestDoc& d : *docs) {
      v1::ObjectMeta* m = nullptr;
      switch (d.resource.kind_case()) {
        case v1::Resource::kService: m = d.resource.mutable_service()->mutable_metadata(); break;
        case v1::Resource::kEndpointSlice: m = d.resource.mutable_endpoint_slice()->mutable_metadata(); break;
        default: m = d.resource.mutable_workload()->mutable_metadata(); break;
      }
      if (m->namespace_().empty() && !flags_.ns.empty()) m->set_namespace_(flags_.ns);
      if (del) {
        v1::ResourceRef* ref = req.add_deletes();
        ref->set_kind(d.resource.kind_case() == v1::Resource::kService ? v1::SERVICE
                      : d.resource.kind_case() == v1::Resource::kEndpointSlice ? v1::ENDPOINT_SLICE
                                                                               : v1::WORKLOAD);
        ref->set_namespace_(m->namespace_());
        ref->set_name(m->name());
      } else {
        *req.add_upserts() = d.resource;
      }
    }
    v1::ApplyResponse resp;
    grpc::Status s = stub_->Apply(Ctx().get(), req, &resp);
    if (!s.ok()) return ReportRpc(s, flags_.server);
    const char* suffix = flags_.dry_run ? " (dry run)" : "";
    for (const v1::ResourceRef& ref : resp.deleted()) {
      v1::Resource r;
      std::cout << KindWord(ref.kind()) << "/" << ref.namespace_() << "/" << ref.name() << " deleted" << suffix << "\n";
    }
    int i = resp.deleted_size();
    for (const v1::Resource& r : resp.applied()) {
      const std::string outcome = i < resp.outcomes_size() ? resp.outcomes(i) : "applied";
      ++i;
      const std::string d = DescribeResource(r);
      const size_t sp = d.find(' ');
      std::cout << d.substr(0, sp) << "/" << d.substr(sp + 1) << " " << outcome << suffix << "\n";
    }
    return kExitOk;
  }

  static const char* KindWord(v1::Kind k) {
    switch (k) {
      case v1::SERVICE: return "service";
      case v1::ENDPOINT_SLICE: return "endpointslice";
      default: return "workload";
    }
  }

  int DeleteOne(v1::Kind kind, const std::string& name) {
    v1::DeleteRequest req;
    v1::ResourceRef* ref = req.add_refs();
    ref->set_kind(kind);
    ref->set_namespace_(flags_.ns);
    ref->set_name(name);
    v1::DeleteResponse resp;
    grpc::Status s = stub_->Delete(Ctx().get(), req, &resp);
    if (!s.ok()) return ReportRpc(s, flags_.server);
    for (const v1::ResourceRef& d : resp.deleted()) {
      std::cout << KindWord(kind) << "/" << d.namespace_() << "/" << d.name() << " deleted\n";
    }
    return kExitOk;
  }

  int Get(v1::Kind kind, const std::string& name) {
    std::vector<v1::Resource> items;
    if (!name.empty()) {
      v1::GetRequest req;
      req.mutable_ref()->set_kind(kind);
      req.mutable_ref()->set_namespace_(flags_.ns);
      req.mutable_ref()->set_name(name);
      v1::Resource r;
      grpc::Status s = stub_->Get(Ctx().get(), req, &r);
      if (!s.ok()) return ReportRpc(s, flags_.server);
      items.push_back(r);
    } else {
      v1::ListRequest req;
      req.set_kind(kind);
      req.set_namespace_(flags_.ns);
      v1::ListResponse resp;
      grpc::Status s = stub_->List(Ctx().get(), req, &resp);
      if (!s.ok()) return ReportRpc(s, flags_.server);
      items.assign(resp.resources().begin(), resp.resources().end());
    }
    if (flags_.output == "json" || flags_.output == "yaml") {
      const bool yaml = flags_.output == "yaml";
      if (!yaml && items.size() != 1) std::cout << "[\n";
      for (size_t i = 0; i < items.size(); ++i) {
        if (yaml) {
          std::cout << (i ? "---\n" : "") << ResourceDoc(items[i], true);
        } else {
          std::string doc = ResourceDoc(items[i], false);
          while (!doc.empty() && doc.back() == '\n') doc.pop_back();
          std::cout << doc << (i + 1 < items.size() ? ",\n" : "\n");
        }
      }
      if (!yaml && items.size() != 1) std::cout << "]\n";
      return kExitOk;
    }
    if (items.empty()) {
      std::cerr << "No resources found.\n";
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows = {Header(kind)};
    for (const v1::Resource& r : items) rows.push_back(Row(r));
    PrintTable(rows);
    return kExitOk;
  }

  int Explain() {
    v1::GetRulesetResponse resp;
    grpc::Status s = stub_->GetRuleset(Ctx().get(), v1::GetRulesetRequest(), &resp);
    if (!s.ok()) return ReportRpc(s, flags_.server);
    if (resp.text().empty()) {
      std::cout << "# nothing committed by this server run yet (table " << resp.table() << ")\n";
    } else {
      std::cout << resp.text();
    }
    return kExitOk;
  }

  int Status() {
    v1::StatusResponse resp;
    grpc::Status s = stub_->Status(Ctx().get(), v1::StatusRequest(), &resp);
    if (!s.ok()) return ReportRpc(s, flags_.server);
    std::cout << "server version:  " << resp.version() << "\n"
              << "node:            " << resp.node_name() << "\n"
              << "revision:        " << resp.revision() << "\n"
              << "services:        " << resp.services() << "\n"
              << "endpointslices:  " << resp.endpoint_slices() << "\n"
              << "workloads:       " << resp.workloads() << "\n";
    if (resp.has_last_sync_duration()) {
      double ms = resp.last_sync_duration().seconds() * 1e3 + resp.last_sync_duration().nanos() / 1e6;
      std::cout << "last sync:       " << resp.last_sync_time().seconds() << " (unix), took " << ms << " ms\n";
    }
    std::cout << "last error:      " << (resp.last_error().empty() ? "<none>" : resp.last_error()) << "\n";
    return kExitOk;
  }

 private:
  const Flags& flags_;
  std::unique_ptr<v1::Proxy::Stub> stub_;
};

}  // namespace

int RunClient(const std::string& command, const std::vector<std::string>& args) {
  Flags flags;
  std::string err;
  if (!ParseFlags(args, &flags, &err)) {
    std::cerr << "error: " << err << "\n";
    return kExitBadInput;
  }
  if (command == "version") {
    std::cout << "nftproxy " << NFTPROXY_VERSION << "\n";
    return kExitOk;
  }
  Client client(flags);
  const auto& pos = flags.positional;
  if (command == "apply") return client.Apply(false);
  if (command == "delete") {
    if (!flags.file.empty()) return client.Apply(true);
    v1::Kind kind;
    if (pos.size() != 2 || !ParseKind(pos[0], &kind)) {
      std::cerr << "error: usage: nftproxy delete KIND NAME [-n NS] | nftproxy delete -f PATH\n";
      return kExitBadInput;
    }
    return client.DeleteOne(kind, pos[1]);
  }
  if (command == "get") {
    v1::Kind kind;
    if (pos.empty() || pos.size() > 2 || !ParseKind(pos[0], &kind)) {
      std::cerr << "error: usage: nftproxy get services|endpointslices|workloads [NAME] [-n NS] [-o table|yaml|json]\n";
      return kExitBadInput;
    }
    return client.Get(kind, pos.size() == 2 ? pos[1] : "");
  }
  if (command == "explain") return client.Explain();
  if (command == "status") return client.Status();
  std::cerr << "error: unknown command \"" << command << "\"\n\n" << kUsage;
  return kExitBadInput;
}

}  // namespace nftproxy::client
