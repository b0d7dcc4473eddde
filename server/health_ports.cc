#include "server/health_ports.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <set>

#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/resource.h"

namespace nftproxy::server {

namespace {

// Names are DNS labels, so this only guards against surprises.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::optional<HealthPort> HealthPortOf(const Desired& d, const std::string& ns, const std::string& name,
                                       const std::string& node_name) {
  const v1::Resource* res = d.Find(Key{v1::SERVICE, ns, name});
  if (res == nullptr) return std::nullopt;
  const v1::ServiceSpec& spec = res->service().spec();
  if (spec.external_traffic_policy() != v1::ServiceSpec::LOCAL || spec.health_check_node_port() == 0 ||
      spec.health_check_node_port() > 65535 || spec.type() == v1::ServiceSpec::EXTERNAL_NAME) {
    return std::nullopt;
  }
  HealthPort p;
  p.ns = ns;
  p.name = name;
  p.port = static_cast<uint16_t>(spec.health_check_node_port());
  // An endpoint is known by its addresses (the same one in two slices counts once).
  std::set<std::string> local;
  auto add = [&](const google::protobuf::RepeatedPtrField<std::string>& addresses) {
    std::string id;
    for (const std::string& a : addresses) absl::StrAppend(&id, a, ",");
    local.insert(std::move(id));
  };
  if (!spec.selector().empty()) {
    const State& state = d.state();
    for (auto it = state.objects.lower_bound(Key{v1::WORKLOAD, ns, ""});
         it != state.objects.end() && it->first.kind == v1::WORKLOAD && it->first.ns == ns; ++it) {
      const v1::Workload& w = it->second.workload();
      if (w.node_name() == node_name && EndpointReady(w.conditions()) &&
          SelectorMatches(spec.selector(), w.metadata().labels())) {
        add(w.addresses());
      }
    }
  } else {
    for (const std::string& slice : d.SlicesOf(ns, name)) {
      const v1::Resource* s = d.Find(Key{v1::ENDPOINT_SLICE, ns, slice});
      if (s == nullptr) continue;
      for (const v1::Endpoint& e : s->endpoint_slice().endpoints()) {
        if (e.node_name() == node_name && EndpointReady(e.conditions())) add(e.addresses());
      }
    }
  }
  p.local_endpoints = static_cast<int>(local.size());
  return p;
}

HttpResponse HealthPortResponse(const HealthPort& p, bool proxy_healthy) {
  HttpResponse r;
  r.status = p.local_endpoints > 0 && proxy_healthy ? 200 : 503;
  r.content_type = "application/json";
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.body = absl::StrCat("{\"service\": {\"namespace\": ", JsonString(p.ns), ", \"name\": ", JsonString(p.name),
                        "}, \"localEndpoints\": ", p.local_endpoints,
                        ", \"serviceProxyHealthy\": ", proxy_healthy ? "true" : "false", "}\n");
  return r;
}

HealthPortPlan PlanHealthPorts(const std::map<uint16_t, HealthPort>& current, const HealthPortChanges& changes,
                               bool full) {
  HealthPortPlan plan;
  if (!full) {
    for (const auto& [port, p] : current) {
      if (changes.count({p.ns, p.name}) == 0) plan.next.emplace(port, p);
    }
  }
  for (const auto& [svc, p] : changes) {
    // Validation keeps ports unique; were two to claim one, the first keeps it.
    if (p.has_value()) plan.next.emplace(p->port, *p);
  }
  for (const auto& [port, p] : plan.next) {
    if (current.count(port) == 0) plan.open.push_back(port);
  }
  for (const auto& [port, p] : current) {
    if (plan.next.count(port) == 0) plan.close.push_back(port);
  }
  return plan;
}

std::function<absl::StatusOr<std::vector<int>>(uint16_t port)> BindOnNodeAddresses(std::vector<dp::Cidr> cidrs) {
  return [cidrs = std::move(cidrs)](uint16_t port) -> absl::StatusOr<std::vector<int>> {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return absl::UnavailableError(absl::StrCat("getifaddrs: ", strerror(errno)));
    std::set<std::string> addresses;
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = i->ifa_addr->sa_family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
      if (inet_ntop(i->ifa_addr->sa_family, raw, text, sizeof(text)) == nullptr) continue;
      absl::StatusOr<dp::IpAddr> ip = dp::IpAddr::Parse(text);
      if (!ip.ok()) continue;
      for (const dp::Cidr& c : cidrs) {
        if (c.addr.family == ip->family && !(*ip < c.Network().addr) && !(c.Last() < *ip)) {
          addresses.insert(text);
          break;
        }
      }
    }
    freeifaddrs(list);
    if (addresses.empty()) {
      return absl::UnavailableError("no address of this node is inside --nodeport-addresses");
    }
    std::vector<int> fds;
    for (const std::string& a : addresses) {
      absl::StatusOr<int> fd = ListenSocket(a, port);
      if (!fd.ok()) {
        for (int f : fds) close(f);
        return fd.status();
      }
      fds.push_back(*fd);
    }
    return fds;
  };
}

absl::StatusOr<std::unique_ptr<HealthPorts>> HealthPorts::Start(std::function<bool()> healthy, Binder bind,
                                                                HttpServerOptions options) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options);
  if (!server.ok()) return server.status();
  if (!bind) {
    bind = [](uint16_t port) -> absl::StatusOr<std::vector<int>> {
      absl::StatusOr<int> fd = ListenAnySocket(port);
      if (!fd.ok()) return fd.status();
      return std::vector<int>{*fd};
    };
  }
  return std::unique_ptr<HealthPorts>(new HealthPorts(std::move(healthy), std::move(bind), std::move(*server)));
}

HealthPorts::HealthPorts(std::function<bool()> healthy, Binder bind, std::unique_ptr<HttpServer> server)
    : healthy_(std::move(healthy)), bind_(std::move(bind)), server_(std::move(server)) {}

HealthPorts::~HealthPorts() {
  server_.reset();  // closes the served sockets; no handler runs after this
  for (const auto& [port, fds] : opened_) {
    for (int fd : fds) close(fd);
  }
}

HttpResponse HealthPorts::Answer(uint16_t port) const {
  HealthPort p;
  {
    absl::MutexLock lock(&mu_);
    auto it = serving_.find(port);
    if (it == serving_.end()) {
      // Between a commit and the close of a removed port.
      HttpResponse r;
      r.status = 503;
      r.body = "no service\n";
      return r;
    }
    p = it->second;
  }
  return HealthPortResponse(p, healthy_());
}

absl::Status HealthPorts::Prepare(const HealthPortChanges& changes, bool full, bool best_effort) {
  Abort();  // a previous write's leftovers, should there be any
  HealthPortPlan plan = PlanHealthPorts(Serving(), changes, full);
  std::vector<uint16_t> open;
  for (uint16_t port : plan.open) {
    absl::StatusOr<std::vector<int>> fd = bind_(port);
    if (fd.ok()) {
      opened_.emplace(port, std::move(*fd));
      open.push_back(port);
      continue;
    }
    const HealthPort& p = plan.next.at(port);
    absl::Status err = ResourceError(
        absl::StatusCode::kFailedPrecondition, Key{v1::SERVICE, p.ns, p.name}, "spec.healthCheckNodePort",
        absl::StrCat("cannot listen on health check node port ", port, ": ", fd.status().message()));
    if (!best_effort) {
      Abort();
      return err;
    }
    log::Error("a health check node port is not served", {{"error", std::string(err.message())}});
    plan.next.erase(port);
  }
  plan.open = std::move(open);
  plan_ = std::move(plan);
  return absl::OkStatus();
}

void HealthPorts::Commit() {
  if (!plan_) return;
  HealthPortPlan plan = std::move(*plan_);
  plan_.reset();
  {
    absl::MutexLock lock(&mu_);
    serving_ = plan.next;
  }
  for (uint16_t port : plan.open) {
    std::vector<int> fds = std::move(opened_.at(port));
    opened_.erase(port);
    for (int fd : fds) server_->AddListener(fd, [this, port](const HttpRequest&) { return Answer(port); });
    fds_[port] = std::move(fds);
  }
  for (uint16_t port : plan.close) {
    auto it = fds_.find(port);
    if (it == fds_.end()) continue;
    for (int fd : it->second) server_->RemoveListener(fd);
    fds_.erase(it);
  }
}

void HealthPorts::Abort() {
  plan_.reset();
  for (const auto& [port, fds] : opened_) {
    for (int fd : fds) close(fd);
  }
  opened_.clear();
}

std::map<uint16_t, HealthPort> HealthPorts::Serving() const {
  absl::MutexLock lock(&mu_);
  return serving_;
}

}  // namespace nftproxy::server
