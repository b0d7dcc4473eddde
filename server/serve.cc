#include "server/serve.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "dataplane/nft_dataplane.h"
#include "common/address.h"
#include "common/flags.h"
#include "common/id_files.h"
#include "common/log.h"
#include "common/resource.h"
#include "server/etcd_client.h"
#include "server/etcd_store.h"
#include "server/file_store.h"
#include "server/grpc_service.h"
#include "server/dns_server.h"
#include "server/health_ports.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/instance_lock.h"
#include "server/manifest_dir.h"
#include "server/state_check.h"
#include "server/tls.h"
#include "server/unix_listener.h"
#include "server/reflection.h"
#include "server/write_engine.h"

namespace nftproxy::server {
namespace {

struct ServeFlags {
  std::vector<std::string> listen;
  std::string table = "nftproxy";
  std::string state_dir = "/var/lib/nftproxy";
  std::string node_name;
  std::vector<std::string> cluster_cidrs;
  std::vector<std::string> nodeport_addresses;
  std::string nodeport_range = "30000-32767";
  std::string log_writes_over = "1s";
  std::string log_format = "text";
  std::string socket_mode = "0660";
  bool adopt_table = false;
  bool kernel_counters = true;
  bool endpoint_counters = true;
  bool drift_watch = true;
  std::string socket_group;
  // Sizes: the request (bytes), and per resource (see ResourceLimits).
  std::string max_request_bytes = "67108864";
  std::string max_ports_per_service, max_addresses_per_service, max_endpoints_per_slice, max_ports_per_slice,
      max_labels;
  std::string log_level = "info";
  // TLS and who may do what.
  std::string tls_cert, tls_key, tls_client_ca, tls_reload_interval = "5s";
  bool insecure_listen = false;
  std::string authz;
  std::string max_watch_streams, watch_buffer_events;
  bool recover = false;
  // Appliance mode: directories of manifests, each kept synced as a source.
  std::vector<std::string> manifests;
  // --config FILE, and where it set each key (for error messages).
  std::string config;
  std::map<std::string, FlagOrigin> config_origins;
  std::string metrics_address = "127.0.0.1:10249";
  std::string health_timeout = "60s";
  // The DNS responder (server/dns_server.h): off without --dns-address.
  std::vector<std::string> dns_addresses, dns_upstreams;
  std::string cluster_domain = "cluster.local";
  std::string dns_ttl = "5s", dns_max_udp_size = "1232", dns_max_tcp_connections = "100",
              dns_tcp_idle_timeout = "10s", dns_max_forwards = "256", dns_forward_timeout = "2s";
  // The desired state shared in etcd (server/etcd_store.h): off without
  // --etcd-endpoints.
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "/nftproxy/";
  std::string etcd_trim_entries = "1000";
  std::string etcd_ca, etcd_cert, etcd_key;
};

// The --config file and where it set each key, for Located().
const ServeFlags* g_located_flags = nullptr;

// `message` about a flag ("--nodeport-range 1-x: ..."), prefixed with the
// place in the --config file that set it, when the file did:
// "/etc/nftproxy/config.yaml:7:17: key nodeport-range: --nodeport-range ...".
std::string Located(absl::string_view message) {
  if (g_located_flags == nullptr || !absl::StartsWith(message, "--")) return std::string(message);
  const size_t end = message.find_first_of(" :=/", 2);
  const std::string key(message.substr(2, end == absl::string_view::npos ? absl::string_view::npos : end - 2));
  auto it = g_located_flags->config_origins.find(key);
  if (it == g_located_flags->config_origins.end()) return std::string(message);
  return absl::StrCat(g_located_flags->config, ":", it->second.line, ":", it->second.column, ": key ", key, ": ",
                      message);
}

const char kUsage[] = R"(Usage: nftproxy serve [flags]

Runs the nftproxy server: accepts services over gRPC and programs them into
the nftables table `inet <table>`.

Flags:
  --config FILE     read settings from a YAML file: every flag below, keyed
                    by its name without the dashes (listen:, state-dir:,
                    max-watch-streams:, ...); repeatable flags take a list
                    (or one value), on/off flags true or false. Flags on the
                    command line win over the file (a repeatable flag given
                    there replaces the file's list). An unknown key, a wrong
                    type or a bad value stops the start (exit 2) naming the
                    file, line, column and key. Packaged default:
                    /etc/nftproxy/config.yaml (every key, commented)
  --manifests DIR   appliance mode: keep the manifests in DIR (*.yaml, *.yml,
                    *.json, the formats of `nftproxy apply -f`, subdirectories
                    too) synced as the source "dir:<DIR as an absolute path>";
                    may repeat. Changes apply within a second (inotify; a
                    rescan every 10s as a fallback); hidden and editor files
                    (.x, #x#, x~, *.swp, *.tmp, *.dpkg-*, ...) are ignored,
                    and files still open for writing are not read. A
                    directory that does not parse or validate changes
                    nothing: the last good state keeps serving and the error
                    (file, document, field) is logged and in `status`.
                    Synced once before the server listens. Limits: 10000
                    files, 1000 directories, 16 levels of subdirectories,
                    each file and all of them together at most
                    --max-request-bytes. Directories may not nest. Its files are
                    trusted like the API's writers: let no one else write
                    them (a world-writable file or directory is warned about)
  --listen ADDR     unix:///path or tcp://host:port; may repeat
                    (default unix:///run/nftproxy/nftproxy.sock). TCP is
                    served with TLS (--tls-cert/--tls-key); plaintext TCP is
                    refused unless the address is loopback and
                    --insecure-listen is given
  --tls-cert FILE, --tls-key FILE
                    the server's PEM certificate (chain) and key for TCP
                    listeners; re-read when they change (see
                    --tls-reload-interval), without dropping connections
  --tls-client-ca FILE
                    mutual TLS: clients must present a certificate signed by
                    one of these PEM CAs; its subject and SANs identify the
                    caller to --authz
  --tls-reload-interval DURATION
                    how often the TLS files are checked for changes
                    (default 5s)
  --insecure-listen allow plaintext gRPC on a loopback TCP address (any
                    local user who can reach the port may call the API)
  --authz FILE      authorization policy (YAML): which unix uids/gids and
                    certificate identities may read or write, optionally only
                    for named sources and namespaces; re-read on SIGHUP.
                    Without it: unix-socket callers (whoever may open the
                    socket) and --insecure-listen callers may write, TLS
                    callers need a client certificate to write and may read
                    without one. See `nftproxy serve --help-authz`
  --socket-mode MODE
                    the unix sockets' mode, octal (default 0660); sockets
                    have it from the moment they exist
  --socket-group GROUP
                    the unix sockets' group (name or number; default the
                    server's): its members may call the API
  --table NAME      nftables table to own (default nftproxy); nftproxy marks
                    the tables it creates (comment "managed by nftproxy") and
                    refuses to start (exit 2) on an existing table without it
  --adopt-table     take over an existing table without the mark (one made
                    by an nftproxy before 0.2); its contents are replaced
  --kernel-counters[=false]
                    count each service port's new connections in the kernel
                    (default on): a named counter object per service port,
                    kept across incremental commits and restarts, reset only
                    when the port is removed or the table is replaced whole;
                    shown by `describe service`, `get services -o wide` and
                    /metrics (nftproxy_service_connections_total)
  --endpoint-counters[=false]
                    with --kernel-counters, also count each endpoint's new
                    connections (default on): a named counter object per
                    endpoint of a service port, kept while the endpoint
                    stays in the port; shown by `describe service` and
                    /metrics (nftproxy_endpoint_connections_total). Off on
                    very large installations saves the per-endpoint series
                    and kernel objects
  --drift-watch[=false]
                    listen to nf_tables notifications and repair changes
                    to the table made by others (default on). The kernel
                    builds a notification for every object of every commit,
                    in every network namespace, while anyone on the host
                    listens (about 8 KiB each until the commit ends): with
                    many nftproxy sharing one kernel in namespaces, turn
                    it off in all but one to keep big commits cheap
  --state-dir DIR   where the desired state is kept across restarts
                    (default /var/lib/nftproxy; "" disables). Damaged state
                    files stop the start (exit 2) naming the file and offset
  --etcd-endpoints URL[,URL...]
                    keep the desired state in etcd, shared by every node
                    started with the same endpoints and prefix: writes
                    through any node are committed to etcd (guarded, atomic
                    at any size) before the kernel; every node applies every
                    change; the state dir becomes this node's cache, served
                    while etcd cannot be reached (writes then fail
                    UNAVAILABLE). A node finding the log empty and its
                    cache not writes its cache as the first entry instead
                    of deleting it. Not with --manifests. http://HOST:PORT
                    or https://; may repeat
  --etcd-prefix P   the keys' prefix in etcd (default /nftproxy/)
  --etcd-trim-entries N
                    once this many log entries follow the log's base, a
                    node writes its state as the new base and deletes them,
                    so the log stays short (default 1000; 0: never)
  --etcd-ca FILE, --etcd-cert FILE, --etcd-key FILE
                    PEM files for https endpoints: the CA, and a client
                    certificate and key when etcd asks for one
  --recover         start from the newest consistent point of damaged state
                    files (moved aside into DIR/damaged-<time>/), saying
                    what was lost; see `nftproxy state --help`
  --node-name NAME  this node's name (default: the host name); endpoints
                    with this nodeName are local for LOCAL traffic policies
  --cluster-cidr CIDR
                    pod network; sources inside are cluster-internal and not
                    masqueraded; traffic from outside to cluster IPs is. May repeat
  --nodeport-addresses CIDR
                    node addresses that accept NodePort traffic; may repeat
                    (default: every local address except loopback)
  --nodeport-range MIN-MAX
                    allowed NodePort range (default 30000-32767)
  --log-writes-over DURATION
                    log every write that takes at least this long, with the
                    time of each phase (default 1s; 0 logs every write)
  --log-format text|json
                    one line per event, with an RFC 3339 time and a level
                    (default text)
  --max-request-bytes N
                    largest request accepted (default 67108864, 64 MiB: a Sync
                    of 100,000 services x 10 endpoints is about 25 MB)
  --max-ports-per-service N        (default 256)
  --max-addresses-per-service N    external IPs, LB IPs, source ranges,
                                   each (default 256)
  --max-endpoints-per-slice N      (default 1000, as Kubernetes)
  --max-ports-per-slice N          (default 256)
  --max-labels N                   labels or selector terms (default 64)
                    a resource over a limit is refused with INVALID_ARGUMENT
                    naming the limit, before any other work
  --max-watch-streams N
                    concurrent Watch streams (default 8192); more are
                    refused with RESOURCE_EXHAUSTED
  --watch-buffer-events N
                    how far (in change events) a Watch stream may fall behind
                    before it is ended with ABORTED, to resume from its last
                    revision (default 1000)
  --metrics-address HOST:PORT
                    serve HTTP here (default 127.0.0.1:10249; "" disables):
                    /metrics (Prometheus text format), /healthz and /livez
                    (503 while a change has waited longer than
                    --health-timeout), /readyz (200 once the first commit of
                    this run is in the kernel). Nothing is authenticated: an
                    address other than loopback shows the metrics to anyone
                    who reaches it
  --health-timeout DURATION
                    how long a write or a drift repair may wait before
                    /healthz says 503 (default 60s)
  --dns-address HOST:PORT
                    serve DNS (UDP and TCP) here, repeatable (default: none,
                    no responder): SVC.NS.svc.DOMAIN (A/AAAA: cluster IPs, or
                    a headless service's ready endpoints), HOST.SVC.NS.svc.
                    DOMAIN (headless endpoints), _PORT._PROTO.SVC.NS.svc.
                    DOMAIN (SRV), ExternalName (CNAME), PTR for cluster IPs;
                    updated within each write. Anyone who reaches the port
                    sees the names of every namespace
  --cluster-domain DOMAIN
                    the cluster's DNS domain (default cluster.local)
  --dns-upstream HOST[:PORT]
                    where names outside the domain go, repeatable (default:
                    the nameservers of /etc/resolv.conf); "none": REFUSED
  --dns-ttl DURATION
                    TTL of the answers (default 5s)
  --dns-max-udp-size N
                    largest UDP answer for an EDNS0 client (512-65535,
                    default 1232); larger answers are truncated (TC)
  --dns-max-tcp-connections N
                    TCP connections open at once (default 100)
  --dns-tcp-idle-timeout DURATION
                    a TCP connection without a query is closed (default 10s)
  --dns-max-forwards N
                    queries waiting for an upstream at once (default 256);
                    more are SERVFAIL
  --dns-forward-timeout DURATION
                    an upstream that does not answer in time: SERVFAIL
                    (default 2s)
  --log-level LEVEL, --v N
                    debug, info, warning or error (default info); --v 1 is
                    debug. Refused writes are warnings with their code and
                    message; every write is logged at debug

Example:
  nftproxy serve --listen unix:///run/nftproxy/nftproxy.sock --listen tcp://127.0.0.1:7070
)";

const char kAuthzHelp[] = R"(nftproxy serve --authz FILE: who may call the API

The file is YAML: a list of rules; a caller may do what any rule that
matches one of its identities allows. Reads are Get, List, Watch, Status,
GetRuleset, StreamRuleset and GetCounters; writes (which include reads) are Apply, Sync
and Delete, dry runs too. A denied call is PERMISSION_DENIED naming the
caller, and changes nothing.

  rules:
  - match: ["uid:0", "group:nftproxy-admin"]
    allow: write
  - match: ["dns:adapter.example.com"]      # a client certificate's SAN
    allow: write
    sources: ["cluster-adapter"]            # it must write as this source
    namespaces: ["shop"]                    # and change only this namespace
  - match: ["cert:*", "unix:*"]
    allow: read

Identities:
  unix-socket callers (SO_PEERCRED)   uid:N  gid:N (primary or supplementary)
                                      user:NAME  group:NAME (from /etc/passwd
                                      and /etc/group, when the file is read)
                                      unix:* (any)
  TLS callers with a verified client  cn:NAME  subject:DN  dns:NAME  uri:URI
  certificate (--tls-client-ca)       email:ADDR  ip:ADDR  cert:* (any)
  TLS callers without one             tls:anonymous
  plaintext loopback callers          tcp:insecure (--insecure-listen)
  anyone                              *

A rule with `namespaces` lets its reads see only those namespaces (List and
Watch must name one; the whole ruleset is not shown) and its writes change
only them. The file is read at start (a mistake stops the start) and again
on SIGHUP (a mistake keeps the policy in force and is logged).

Without --authz: unix-socket callers and --insecure-listen callers may
write; TLS callers may write with a verified client certificate and read
without one.
)";

// Every flag of `serve`: the command line's and, by the same names without
// the dashes, the --config file's (FlagSpec::in_file).
std::vector<FlagSpec> ServeFlagSpecs(ServeFlags* f, bool* help, bool* help_authz) {
  return {{{"-h", "--help"}, nullptr, nullptr, help, false},
                              {{"--config"}, &f->config, nullptr, nullptr, false},
                              {{"--manifests"}, nullptr, &f->manifests},
                               {{"--listen"}, nullptr, &f->listen},
                               {{"--table"}, &f->table},
                               {{"--state-dir"}, &f->state_dir},
                               {{"--node-name"}, &f->node_name},
                               {{"--cluster-cidr"}, nullptr, &f->cluster_cidrs},
                               {{"--nodeport-addresses"}, nullptr, &f->nodeport_addresses},
                               {{"--nodeport-range"}, &f->nodeport_range},
                               {{"--log-writes-over"}, &f->log_writes_over},
                               {{"--log-format"}, &f->log_format},
                               {{"--socket-mode"}, &f->socket_mode},
                               {{"--adopt-table"}, nullptr, nullptr, &f->adopt_table},
                               {{"--kernel-counters"}, nullptr, nullptr, &f->kernel_counters},
                               {{"--endpoint-counters"}, nullptr, nullptr, &f->endpoint_counters},
                               {{"--drift-watch"}, nullptr, nullptr, &f->drift_watch},
                               {{"--socket-group"}, &f->socket_group},
                               {{"--log-level", "--v", "-v"}, &f->log_level},
                               {{"--max-request-bytes"}, &f->max_request_bytes},
                               {{"--max-ports-per-service"}, &f->max_ports_per_service},
                               {{"--max-addresses-per-service"}, &f->max_addresses_per_service},
                               {{"--max-endpoints-per-slice"}, &f->max_endpoints_per_slice},
                               {{"--max-ports-per-slice"}, &f->max_ports_per_slice},
                               {{"--max-labels"}, &f->max_labels},
                               {{"--tls-cert"}, &f->tls_cert},
                               {{"--tls-key"}, &f->tls_key},
                               {{"--tls-client-ca"}, &f->tls_client_ca},
                               {{"--tls-reload-interval"}, &f->tls_reload_interval},
                               {{"--insecure-listen"}, nullptr, nullptr, &f->insecure_listen},
                               {{"--authz"}, &f->authz},
                               {{"--help-authz"}, nullptr, nullptr, help_authz, false},
                               {{"--max-watch-streams"}, &f->max_watch_streams},
                               {{"--watch-buffer-events"}, &f->watch_buffer_events},
                               {{"--recover"}, nullptr, nullptr, &f->recover},
                               {{"--metrics-address"}, &f->metrics_address},
                               {{"--health-timeout"}, &f->health_timeout},
                               {{"--dns-address"}, nullptr, &f->dns_addresses},
                               {{"--cluster-domain"}, &f->cluster_domain},
                               {{"--dns-upstream"}, nullptr, &f->dns_upstreams},
                               {{"--dns-ttl"}, &f->dns_ttl},
                               {{"--dns-max-udp-size"}, &f->dns_max_udp_size},
                               {{"--dns-max-tcp-connections"}, &f->dns_max_tcp_connections},
                               {{"--dns-tcp-idle-timeout"}, &f->dns_tcp_idle_timeout},
                               {{"--dns-max-forwards"}, &f->dns_max_forwards},
                               {{"--dns-forward-timeout"}, &f->dns_forward_timeout},
                               {{"--etcd-endpoints"}, nullptr, &f->etcd_endpoints},
                               {{"--etcd-prefix"}, &f->etcd_prefix},
                               {{"--etcd-trim-entries"}, &f->etcd_trim_entries},
                               {{"--etcd-ca"}, &f->etcd_ca},
                               {{"--etcd-cert"}, &f->etcd_cert},
                               {{"--etcd-key"}, &f->etcd_key}};
}

absl::Status ParseServeFlags(const std::vector<std::string>& args, ServeFlags* f, bool* help, bool* help_authz) {
  std::vector<std::string> positional;
  std::set<std::string> given;
  g_located_flags = f;
  const std::vector<FlagSpec> specs = ServeFlagSpecs(f, help, help_authz);
  absl::Status s = ParseFlags(args, specs, &positional, &given);
  if (!s.ok()) return s;
  if (!positional.empty()) return absl::InvalidArgumentError(absl::StrCat("unexpected argument ", positional[0]));
  if (!f->config.empty() && !*help && !*help_authz) {
    // The command line wins: the keys it gave are checked in the file, not applied.
    if (absl::Status c = LoadFlagFile(f->config, specs, given, &f->config_origins); !c.ok()) return c;
  }
  if (f->listen.empty()) f->listen.push_back(kDefaultServer);
  absl::StatusOr<log::Level> level = log::ParseLevel(f->log_level);
  if (!level.ok()) {
    return absl::InvalidArgumentError(Located(absl::StrCat("--log-level ", level.status().message())));
  }
  absl::StatusOr<log::Format> format = log::ParseFormat(f->log_format);
  if (!format.ok()) {
    return absl::InvalidArgumentError(Located(absl::StrCat("--log-format ", format.status().message())));
  }
  log::Configure(*level, *format);
  if (f->node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    f->node_name = host;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, std::vector<std::string>>> ResolveServeSettings(
    const std::vector<std::string>& args) {
  ServeFlags f;
  bool help = false, help_authz = false;
  absl::Status s = ParseServeFlags(args, &f, &help, &help_authz);
  if (!s.ok()) s = absl::InvalidArgumentError(Located(s.message()));
  g_located_flags = nullptr;  // f goes
  if (!s.ok()) return s;
  std::map<std::string, std::vector<std::string>> out;
  for (const FlagSpec& spec : ServeFlagSpecs(&f, &help, &help_authz)) {
    if (!spec.in_file) continue;
    std::vector<std::string>& v = out[FlagKey(spec)];
    if (spec.value != nullptr) v = {*spec.value};
    if (spec.values != nullptr) v = *spec.values;
    if (spec.set != nullptr) v = {*spec.set ? "true" : "false"};
  }
  return out;
}

std::vector<std::string> ServeConfigKeys() {
  ServeFlags f;
  bool help = false, help_authz = false;
  std::vector<std::string> keys;
  for (const FlagSpec& spec : ServeFlagSpecs(&f, &help, &help_authz)) {
    if (spec.in_file) keys.push_back(FlagKey(spec));
  }
  return keys;
}

namespace {

// A positive number flag into *out; unset leaves the default.
absl::Status NumberFlag(const char* flag, const std::string& text, uint32_t* out) {
  if (text.empty()) return absl::OkStatus();
  uint32_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v == 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", text, ": want a positive whole number"));
  }
  *out = v;
  return absl::OkStatus();
}

// The DNS responder's settings (nullopt: no --dns-address, no responder);
// InvalidArgument naming the flag.
absl::StatusOr<std::optional<DnsServerOptions>> DnsOptionsOf(const ServeFlags& f) {
  if (f.dns_addresses.empty()) return std::nullopt;
  DnsServerOptions o;
  for (const std::string& text : f.dns_addresses) {
    absl::StatusOr<DnsHostPort> hp = ParseDnsHostPort(text);
    if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat("--dns-address ", text, ": ", hp.status().message()));
    o.listen.push_back(*hp);
  }
  const std::string domain(absl::StripSuffix(absl::StripPrefix(f.cluster_domain, "."), "."));
  if (domain.empty() || domain.size() > 200 ||
      !std::all_of(domain.begin(), domain.end(), [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '.'; }) ||
      absl::StrContains(domain, "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cluster-domain ", f.cluster_domain, ": want a DNS name such as cluster.local"));
  }
  o.domain = domain;
  if (f.dns_upstreams.size() == 1 && f.dns_upstreams[0] == "none") {
    // none: names outside the domain are REFUSED
  } else if (f.dns_upstreams.empty()) {
    o.upstreams = ResolvConfNameservers("/etc/resolv.conf", o.listen);
  } else {
    for (const std::string& text : f.dns_upstreams) {
      absl::StatusOr<DnsHostPort> hp = ParseDnsHostPort(text);
      if (!hp.ok() || hp->port == 0) {
        return absl::InvalidArgumentError(absl::StrCat("--dns-upstream ", text, ": ",
                                                       hp.ok() ? "port 0" : hp.status().message(),
                                                       " (HOST[:PORT], or none)"));
      }
      o.upstreams.push_back(*hp);
    }
  }
  auto duration = [](const char* flag, const std::string& text, absl::Duration* out) -> absl::Status {
    if (!absl::ParseDuration(text, out) || *out <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " ", text, ": want a positive duration such as 5s"));
    }
    return absl::OkStatus();
  };
  absl::Duration ttl;
  if (auto s = duration("--dns-ttl", f.dns_ttl, &ttl); !s.ok()) return s;
  o.ttl = static_cast<uint32_t>(std::min<int64_t>(absl::ToInt64Seconds(ttl), 86400));
  if (auto s = duration("--dns-tcp-idle-timeout", f.dns_tcp_idle_timeout, &o.tcp_idle_timeout); !s.ok()) return s;
  if (auto s = duration("--dns-forward-timeout", f.dns_forward_timeout, &o.forward_timeout); !s.ok()) return s;
  uint32_t udp = 1232, conns = 100, forwards = 256;
  for (auto [flag, text, out] : {std::tuple{"--dns-max-udp-size", &f.dns_max_udp_size, &udp},
                                 {"--dns-max-tcp-connections", &f.dns_max_tcp_connections, &conns},
                                 {"--dns-max-forwards", &f.dns_max_forwards, &forwards}}) {
    if (auto s = NumberFlag(flag, *text, out); !s.ok()) return s;
  }
  if (udp < 512 || udp > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--dns-max-udp-size ", f.dns_max_udp_size, ": want 512-65535"));
  }
  o.limits.max_udp_answer = udp;
  o.max_tcp_connections = conns;
  o.max_forwards = forwards;
  return o;
}

// Creates the state directory (0750) or tightens an existing one to at most
// 0750; one that others may write to is refused: whoever can replace its
// files decides what the next start installs.
absl::Status PrepareStateDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("--state-dir ", dir, ": cannot create it: ", strerror(errno)));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--state-dir ", dir, ": not a directory"));
  }
  const mode_t mode = st.st_mode & 07777;
  if (mode & S_IWOTH) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "--state-dir %s: writable by every user (mode %04o); anyone could change what the next start installs. "
        "Fix it with: chmod 0750 %s",
        dir, mode, dir));
  }
  if ((mode & ~mode_t{0750}) != 0 && chmod(dir.c_str(), mode & 0750) != 0) {
    return absl::InternalError(absl::StrCat("--state-dir ", dir, ": cannot tighten its mode: ", strerror(errno)));
  }
  return absl::OkStatus();
}

// Creates the socket's directory (0750) and removes a stale socket.
bool PrepareUnixSocket(const std::string& path, std::string* err) {
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
      *err = absl::StrCat("creating ", dir, ": ", strerror(errno));
      return false;
    }
  }
  return true;
}

// Parses the values of a repeatable CIDR flag; on error says which and why.
bool ParseCidrs(const char* flag, const std::vector<std::string>& values, std::vector<dp::Cidr>* out) {
  for (const std::string& v : values) {
    auto cidr = dp::Cidr::Parse(v);
    if (!cidr.ok()) {
      std::cerr << "nftproxy serve: " << Located(absl::StrCat(flag, " ", v, ": ", cidr.status().message())) << "\n";
      return false;
    }
    out->push_back(*cidr);
  }
  return true;
}

// The credentials of every TCP listener: TLS when --tls-cert is given;
// plaintext only on loopback with --insecure-listen. Checked before anything
// is touched.
absl::Status TcpCredentials(const ServeFlags& f, const std::vector<Address>& listen,
                            std::shared_ptr<grpc::ServerCredentials>* out) {
  const bool tls = !f.tls_cert.empty() || !f.tls_key.empty();
  if (!tls && !f.tls_client_ca.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key (the server's own certificate)");
  }
  bool any_tcp = false;
  for (const Address& a : listen) {
    if (a.kind != Address::Kind::kTcp) continue;
    any_tcp = true;
    if (tls) continue;
    if (!a.IsLoopback()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen ", a.ToString(),
          ": refusing plaintext gRPC on a non-loopback address (anyone who reaches it could change this node's NAT). "
          "Give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or listen on a unix socket"));
    }
    if (!f.insecure_listen) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen ", a.ToString(),
          ": plaintext gRPC needs --insecure-listen (every local user who can reach the port may call the API), "
          "or give --tls-cert and --tls-key"));
    }
  }
  if (tls && !any_tcp) {
    return absl::InvalidArgumentError("--tls-cert/--tls-key: no TCP --listen address to serve TLS on");
  }
  if (!tls) {
    *out = grpc::InsecureServerCredentials();
    return absl::OkStatus();
  }
  TlsFiles files{f.tls_cert, f.tls_key, f.tls_client_ca};
  if (!absl::ParseDuration(f.tls_reload_interval, &files.reload_interval) ||
      files.reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-reload-interval ", f.tls_reload_interval, ": want a duration of 1s or more, e.g. 5s"));
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = TlsCredentials(files);
  if (!creds.ok()) return creds.status();
  *out = std::move(*creds);
  return absl::OkStatus();
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  // abseil's lock-order checking (on in Debian's build) costs about 10% of
  // the CPU while Watch streams fan out, and aborts the process on a
  // suspected cycle; the unit tests and the thread-safety analysis in CI
  // check lock order instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Signals are taken by a thread with sigwait, so shutdown runs in normal
  // context. Blocked before anything starts threads, which inherit the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  ServeFlags flags;
  bool help = false, help_authz = false;
  if (absl::Status s = ParseServeFlags(args, &flags, &help, &help_authz); !s.ok()) {
    std::cerr << "nftproxy serve: " << Located(s.message()) << "\n\n" << kUsage;
    return 2;
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (help_authz) {
    std::cout << kAuthzHelp;
    return 0;
  }
  // Every --listen address is checked before anything is touched.
  std::vector<Address> listen;
  for (const std::string& text : flags.listen) {
    absl::StatusOr<Address> a = ParseAddress(text);
    if (!a.ok()) {
      std::cerr << "nftproxy serve: " << Located(absl::StrCat("--listen ", a.status().message())) << "\n";
      return 2;
    }
    listen.push_back(*a);
  }
  std::optional<Address> metrics_address;
  if (!flags.metrics_address.empty()) {
    absl::StatusOr<Address> a = ParseAddress(flags.metrics_address);
    if (!a.ok() || a->kind != Address::Kind::kTcp) {
      std::cerr << "nftproxy serve: --metrics-address " << flags.metrics_address
                << ": want HOST:PORT, e.g. 127.0.0.1:10249 or [::1]:10249 (\"\" disables)\n";
      return 2;
    }
    metrics_address = *a;
  }
  absl::Duration health_timeout;
  if (!absl::ParseDuration(flags.health_timeout, &health_timeout) || health_timeout <= absl::ZeroDuration()) {
    std::cerr << "nftproxy serve: --health-timeout " << flags.health_timeout
              << ": want a positive duration such as 60s\n";
    return 2;
  }
  absl::StatusOr<std::optional<DnsServerOptions>> dns_options = DnsOptionsOf(flags);
  if (!dns_options.ok()) {
    std::cerr << "nftproxy serve: " << Located(dns_options.status().message()) << "\n";
    return 2;
  }
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials;
  if (absl::Status s = TcpCredentials(flags, listen, &tcp_credentials); !s.ok()) {
    std::cerr << "nftproxy serve: " << Located(s.message()) << "\n";
    return 2;
  }
  auto policy = std::make_shared<const Policy>();
  if (!flags.authz.empty()) {
    absl::StatusOr<Policy> loaded = Policy::Load(flags.authz);
    if (!loaded.ok()) {
      std::cerr << "nftproxy serve: " << loaded.status().message() << "\n";
      return 2;
    }
    policy = std::make_shared<const Policy>(std::move(*loaded));
  }
  PolicyHolder policy_holder(policy);
  // The shared store: its options are checked here; etcd is not asked yet.
  std::unique_ptr<EtcdClient> etcd;
  std::unique_ptr<EtcdSharedLog> shared_log;
  uint64_t trim_entries = 0;
  if (!flags.etcd_endpoints.empty()) {
    if (!flags.manifests.empty()) {
      // Every node would keep its own directory synced into the one shared
      // state, each undoing the others' differences.
      std::cerr << "nftproxy serve: "
                << Located("--manifests cannot be used with --etcd-endpoints: the directory would be one node's view "
                           "of the shared state; sync it through one node instead (nftproxy sync -f DIR --source "
                           "NAME)")
                << "\n";
      return 2;
    }
    EtcdOptions eo;
    for (const std::string& list : flags.etcd_endpoints) {
      for (absl::string_view e : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
        eo.endpoints.emplace_back(absl::StripAsciiWhitespace(e));
      }
    }
    eo.ca_file = flags.etcd_ca;
    eo.cert_file = flags.etcd_cert;
    eo.key_file = flags.etcd_key;
    if (flags.etcd_prefix.empty()) {
      std::cerr << "nftproxy serve: " << Located("--etcd-prefix: must not be empty (e.g. /nftproxy/)") << "\n";
      return 2;
    }
    absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Connect(eo);
    if (!client.ok()) {
      std::cerr << "nftproxy serve: " << Located(absl::StrCat("--etcd-endpoints ", client.status().message())) << "\n";
      return 2;
    }
    etcd = std::move(*client);
    if (!absl::SimpleAtoi(flags.etcd_trim_entries, &trim_entries)) {
      std::cerr << "nftproxy serve: "
                << Located(absl::StrCat("--etcd-trim-entries ", flags.etcd_trim_entries,
                                        ": want a whole number (0: never trim)"))
                << "\n";
      return 2;
    }
    shared_log = std::make_unique<EtcdSharedLog>(etcd.get(), flags.etcd_prefix);
  } else if (!flags.etcd_ca.empty() || !flags.etcd_cert.empty() || !flags.etcd_key.empty()) {
    std::cerr << "nftproxy serve: --etcd-ca, --etcd-cert and --etcd-key need --etcd-endpoints\n";
    return 2;
  }
  // Every value is checked before anything is touched.
  EngineOptions options;
  options.shared = shared_log.get();
  options.shared_trim_entries = trim_entries;
  options.node_name = flags.node_name;
  options.node.counters = flags.kernel_counters;
  options.node.endpoint_counters = flags.kernel_counters && flags.endpoint_counters;
  if (!ParseCidrs("--cluster-cidr", flags.cluster_cidrs, &options.node.cluster_cidrs) ||
      !ParseCidrs("--nodeport-addresses", flags.nodeport_addresses, &options.node.nodeport_cidrs)) {
    return 2;
  }
  {
    unsigned lo = 0, hi = 0;
    char dash = 0;
    if (sscanf(flags.nodeport_range.c_str(), "%u%c%u", &lo, &dash, &hi) != 3 || dash != '-' || lo < 1 ||
        hi > 65535 || lo > hi) {
      std::cerr << "nftproxy serve: "
                << Located(absl::StrCat("--nodeport-range ", flags.nodeport_range,
                                        ": want MIN-MAX within 1-65535, e.g. 30000-32767"))
                << "\n";
      return 2;
    }
    options.node_port_min = static_cast<uint16_t>(lo);
    options.node_port_max = static_cast<uint16_t>(hi);
  }
  mode_t socket_mode = 0;
  {
    char* end = nullptr;
    const unsigned long m = strtoul(flags.socket_mode.c_str(), &end, 8);
    if (flags.socket_mode.empty() || *end != '\0' || m > 0777 || (m & 0600) != 0600) {
      std::cerr << "nftproxy serve: "
                << Located(absl::StrCat("--socket-mode ", flags.socket_mode,
                                        ": want an octal mode from 0600 to 0777 that lets the owner read and write, "
                                        "e.g. 0660"))
                << "\n";
      return 2;
    }
    socket_mode = static_cast<mode_t>(m);
  }
  gid_t socket_gid = static_cast<gid_t>(-1);
  if (!flags.socket_group.empty()) {
    if (uint32_t gid = 0; absl::SimpleAtoi(flags.socket_group, &gid)) {
      socket_gid = gid;
    } else if (std::optional<uint32_t> found = LookupGroupId(flags.socket_group); found) {
      socket_gid = *found;  // /etc/group (and NSS in the dynamic build): common/id_files.h
    } else {
      std::cerr << "nftproxy serve: "
                << Located(absl::StrCat("--socket-group ", flags.socket_group,
                                        ": no such group in /etc/group (give its number if it is known elsewhere)"))
                << "\n";
      return 2;
    }
  }
  uint32_t max_request_bytes = 0;
  for (auto [flag, text, out] : {std::tuple{"--max-request-bytes", &flags.max_request_bytes, &max_request_bytes},
                                 {"--max-ports-per-service", &flags.max_ports_per_service,
                                  &options.limits.ports_per_service},
                                 {"--max-addresses-per-service", &flags.max_addresses_per_service,
                                  &options.limits.addresses_per_service},
                                 {"--max-endpoints-per-slice", &flags.max_endpoints_per_slice,
                                  &options.limits.endpoints_per_slice},
                                 {"--max-ports-per-slice", &flags.max_ports_per_slice, &options.limits.ports_per_slice},
                                 {"--max-labels", &flags.max_labels, &options.limits.labels_per_object}}) {
    if (absl::Status s = NumberFlag(flag, *text, out); !s.ok()) {
      std::cerr << "nftproxy serve: " << Located(s.message()) << "\n";
      return 2;
    }
  }
  for (auto [flag, text, out] : {std::tuple{"--max-watch-streams", &flags.max_watch_streams, &options.max_watch_streams},
                                 {"--watch-buffer-events", &flags.watch_buffer_events, &options.watch_buffer_events}}) {
    uint32_t v = static_cast<uint32_t>(*out);
    if (absl::Status s = NumberFlag(flag, *text, &v); !s.ok()) {
      std::cerr << "nftproxy serve: " << Located(s.message()) << "\n";
      return 2;
    }
    *out = v;
  }
  if (!absl::ParseDuration(flags.log_writes_over, &options.log_writes_over) ||
      options.log_writes_over < absl::ZeroDuration()) {
    std::cerr << "nftproxy serve: "
              << Located(absl::StrCat("--log-writes-over ", flags.log_writes_over,
                                      ": want a duration such as 250ms, 1s or 0"))
              << "\n";
    return 2;
  }
  std::vector<std::unique_ptr<ManifestDir>> manifest_dirs;
  for (const std::string& dir : flags.manifests) {
    absl::StatusOr<std::string> abs = ManifestDir::CheckRoot(dir);
    if (!abs.ok()) {
      std::cerr << "nftproxy serve: " << Located(absl::StrCat("--manifests ", abs.status().message())) << "\n";
      return 2;
    }
    bool dup = false;
    for (const auto& m : manifest_dirs) {
      dup = dup || m->root() == *abs;
      const std::string& a = m->root().size() < abs->size() ? m->root() : *abs;
      const std::string& b = m->root().size() < abs->size() ? *abs : m->root();
      if (a != b && absl::StartsWith(b, a == "/" ? a : a + "/")) {
        std::cerr << "nftproxy serve: "
                  << Located(absl::StrCat("--manifests ", dir, ": inside or around --manifests ", m->root(),
                                          " (each file may belong to one directory's source)"))
                  << "\n";
        return 2;
      }
    }
    if (dup) continue;
    ManifestDirLimits limits;
    limits.max_file_bytes = limits.max_total_bytes = max_request_bytes;
    manifest_dirs.push_back(std::make_unique<ManifestDir>(*abs, limits));
  }
  // Nothing is touched while another server holds the table, the state
  // directory or a socket.
  InstanceLocks locks;
  {
    absl::Status held = locks.LockTable(flags.table);
    for (const Address& a : listen) {
      if (held.ok() && a.kind == Address::Kind::kUnix) held = InstanceLocks::ClaimSocketPath(a.path);
    }
    if (held.ok() && !flags.state_dir.empty()) {
      if (absl::Status s = PrepareStateDir(flags.state_dir); !s.ok()) {
        std::cerr << "nftproxy serve: " << Located(s.message()) << "\n";
        return 2;
      }
      held = locks.LockStateDir(flags.state_dir);
    }
    if (!held.ok()) {
      std::cerr << "nftproxy serve: " << held.message() << "\n";
      return 2;
    }
  }
  std::string err;
  auto dataplane = dp::NftDataplane::Create(flags.table, flags.adopt_table);
  if (absl::IsFailedPrecondition(dataplane.status())) {
    std::cerr << "nftproxy serve: " << dataplane.status().message() << "\n";
    return 2;
  }
  if (!dataplane.ok()) {
    log::Error("cannot open the dataplane", {{"error", std::string(dataplane.status().message())}});
    return 1;
  }
  // A trace table a previous run left (it ended before its trace did).
  if (absl::Status s = dp::RemoveTraceTable(flags.table); !s.ok()) {
    log::Warning("cannot remove a leftover trace table",
                 {{"table", dp::TraceTableName(flags.table)}, {"error", std::string(s.message())}});
  }
  std::unique_ptr<FileStateStore> store;
  State saved;
  if (!flags.state_dir.empty()) {
    if (flags.recover) {
      absl::StatusOr<RecoveryReport> recovered = RecoverStateDir(flags.state_dir);
      if (!recovered.ok()) {
        std::cerr << "nftproxy serve: --recover: " << recovered.status().message() << "\n";
        return 2;
      }
      if (recovered->recovered) log::Warning(recovered->Summary(), {{"dir", flags.state_dir}});
    }
    auto opened = FileStateStore::Open(flags.state_dir, &saved);
    if (absl::IsDataLoss(opened.status())) {
      // Damaged state files: nothing is touched (see nftproxy state --help).
      std::cerr << "nftproxy serve: " << opened.status().message() << "\n";
      return 2;
    }
    if (!opened.ok()) {
      log::Error("cannot open the state", {{"dir", flags.state_dir}, {"error", std::string(opened.status().message())}});
      return 1;
    }
    store = std::move(*opened);
    options.store = store.get();
  }
  Registry registry;
  EngineMetrics engine_metrics(&registry);
  options.metrics = &engine_metrics;
  // Health-check node ports (server/health_ports.h): served on the wildcard
  // addresses, or on the node's addresses inside --nodeport-addresses;
  // healthy as /healthz is.
  std::atomic<const WriteEngine*> engine_for_health{nullptr};
  absl::StatusOr<std::unique_ptr<HealthPorts>> health_ports = HealthPorts::Start(
      [&engine_for_health, health_timeout] {
        const WriteEngine* e = engine_for_health.load();
        return e != nullptr && Healthy(e->Health(), health_timeout, absl::Now());
      },
      options.node.nodeport_cidrs.empty() ? nullptr : BindOnNodeAddresses(options.node.nodeport_cidrs));
  if (!health_ports.ok()) {
    log::Error("cannot serve health check node ports", {{"error", std::string(health_ports.status().message())}});
    return 1;
  }
  options.health_ports = health_ports->get();
  // The DNS responder: bound before the saved state is restored, so the
  // restore fills it; a port that cannot be bound stops the start.
  std::unique_ptr<DnsServer> dns;
  if (dns_options->has_value()) {
    (*dns_options)->metrics = &registry;
    if ((*dns_options)->upstreams.empty()) log::Info("dns: no upstream resolver; names outside the domain are REFUSED");
    absl::StatusOr<std::unique_ptr<DnsServer>> started = DnsServer::Start(**dns_options);
    if (!started.ok()) {
      log::Error("cannot serve DNS", {{"error", std::string(started.status().message())}});
      return 1;
    }
    dns = std::move(*started);
    options.dns = dns.get();
    log::Info("serving DNS", {{"dns_address", absl::StrJoin(flags.dns_addresses, ",")},
                              {"cluster_domain", (*dns_options)->domain}});
  }
  WriteEngine engine(dataplane->get(), options);
  engine_for_health.store(&engine);
  // The ports' thread asks the engine; it ends before the engine goes.
  struct StopHealthPorts {
    std::unique_ptr<HealthPorts>* ports;
    ~StopHealthPorts() { ports->reset(); }
  } stop_health_ports{&*health_ports};
  const WatchHub& hub = engine.watch_hub();
  registry.GaugeFunction("nftproxy_watch_streams", "Watch streams open now.",
                         [&hub] { return static_cast<double>(hub.streams()); });
  registry.GaugeFunction("nftproxy_watch_lag_events",
                         "Changes the furthest-behind Watch stream (past its BOOKMARK) has still to send.",
                         [&hub] { return static_cast<double>(hub.max_lag_events()); });
  registry.Sampled("nftproxy_watch_streams_ended_total",
                   "Watch streams the server ended because they fell behind: reason slow (ABORTED, "
                   "--watch-buffer-events) or compacted (OUT_OF_RANGE, changes dropped from the log).",
                   prom::Type::kCounter, {"reason"}, [&hub]() -> absl::StatusOr<SampledFamily::Samples> {
                     return SampledFamily::Samples{
                         {{"compacted"}, static_cast<double>(hub.streams_ended_out_of_range())},
                         {{"slow"}, static_cast<double>(hub.streams_ended_slow())}};
                   });
  if (flags.kernel_counters) {
    // Read from the kernel (each counter by name, never under the engine's
    // lock), once per scrape: the first family a scrape renders reads, the other one
    // (with endpoint counters) takes that read if it is under a second old.
    struct CounterRead {
      absl::Mutex mu;
      absl::Time at ABSL_GUARDED_BY(mu) = absl::InfinitePast();
      int uses ABSL_GUARDED_BY(mu) = 0;
      absl::StatusOr<std::vector<dp::PortConnections>> ports ABSL_GUARDED_BY(mu);
    };
    auto read = std::make_shared<CounterRead>();
    const dp::Dataplane* counted = dataplane->get();
    const int families = options.node.endpoint_counters ? 2 : 1;
    auto ports_now = [read, counted, families]() -> absl::StatusOr<std::vector<dp::PortConnections>> {
      absl::MutexLock lock(&read->mu);
      const absl::Time now = absl::Now();
      if (read->uses >= families || now - read->at >= absl::Seconds(1)) {
        read->ports = counted->ReadCounters(nullptr);
        read->at = now;
        read->uses = 0;
      }
      ++read->uses;
      return read->ports;
    };
    registry.Sampled(
        "nftproxy_service_connections_total",
        "New connections per service port, counted in the kernel (--kernel-counters); reset only when the port "
        "is removed or the table is replaced whole.",
        prom::Type::kCounter, {"namespace", "service", "port", "protocol"},
        [ports_now]() -> absl::StatusOr<SampledFamily::Samples> {
          absl::StatusOr<std::vector<dp::PortConnections>> ports = ports_now();
          if (!ports.ok()) return ports.status();
          SampledFamily::Samples out;
          out.reserve(ports->size());
          for (const dp::PortConnections& p : *ports) {
            out.push_back({{p.ns, p.service, absl::StrCat(p.port), dp::L4ProtoName(p.proto)},
                           static_cast<double>(p.connections)});
          }
          return out;
        });
    if (options.node.endpoint_counters) {
      registry.Sampled(
          "nftproxy_endpoint_connections_total",
          "New connections a service port sent to each endpoint, counted in the kernel (--endpoint-counters); "
          "reset only when the endpoint leaves the port or the table is replaced whole.",
          prom::Type::kCounter, {"namespace", "service", "port", "protocol", "endpoint"},
          [ports_now]() -> absl::StatusOr<SampledFamily::Samples> {
            absl::StatusOr<std::vector<dp::PortConnections>> ports = ports_now();
            if (!ports.ok()) return ports.status();
            SampledFamily::Samples out;
            for (const dp::PortConnections& p : *ports) {
              for (const dp::EndpointConnections& e : p.endpoints) {
                out.push_back({{p.ns, p.service, absl::StrCat(p.port), dp::L4ProtoName(p.proto),
                                JoinHostPort(e.addr.ToString(), e.port)},
                               static_cast<double>(e.connections)});
              }
            }
            return out;
          });
    }
  }
  // Metrics and health over HTTP, from before the saved state is restored
  // (/readyz says 503 until the first commit). A port that cannot be bound is
  // an error in the log, not a reason to stop proxying.
  std::unique_ptr<HttpServer> http;
  if (metrics_address) {
    const std::string shown = metrics_address->GrpcTarget();
    if (!metrics_address->IsLoopback()) {
      log::Warning("metrics and health are served unauthenticated on a non-loopback address",
                   {{"metrics_address", shown}});
    }
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Listen(
        metrics_address->host, metrics_address->port, [&registry, &engine, health_timeout](const HttpRequest& req) {
          return ServeObservability(req, registry, engine.Health(), health_timeout, absl::Now());
        });
    if (started.ok()) {
      http = std::move(*started);
      log::Info("serving metrics and health", {{"metrics_address", shown}});
    } else {
      log::Error("cannot serve metrics and health", {{"metrics_address", shown},
                                                     {"error", std::string(started.status().message())}});
    }
  }
  if (!saved.objects.empty() || saved.revision != 0) {
    // One atomic replacement with what the previous run had installed.
    const size_t n = saved.objects.size();
    if (auto s = engine.Restore(std::move(saved)); !s.ok()) {
      log::Error("cannot restore the saved state", {{"dir", flags.state_dir}, {"error", std::string(s.message())}});
      return 1;
    }
    log::Info("restored the saved state", {{"dir", flags.state_dir}, {"resources", absl::StrCat(n)}});
  }
  // The shared store: every node's changes, applied here in log order (the
  // first time, the whole log replayed against the restored cache).
  std::unique_ptr<EtcdFollower> follower;
  if (shared_log != nullptr) {
    follower = std::make_unique<EtcdFollower>(shared_log.get(), &engine);
    follower->Start();
    log::Info("following the shared state", {{"store", shared_log->Describe()}});
  }
  // From here on, a change to the table by anyone else is repaired.
  if (!flags.drift_watch) {
    log::Info("not watching the table for changes made outside nftproxy (--drift-watch=false)", {});
  } else if (absl::Status s = engine.RepairDrift(); !s.ok()) {
    log::Warning("not watching the table for changes made outside nftproxy", {{"error", std::string(s.message())}});
  }
  // Appliance mode: each directory is synced once (after the restore, before
  // the server listens), then watched. A directory that does not parse or
  // validate is logged and in `status`; whatever was installed keeps serving.
  struct StopDirs {
    std::vector<std::unique_ptr<ManifestDir>>* dirs;
    ~StopDirs() {
      for (auto& m : *dirs) m->Stop();  // before the engine goes
    }
  } stop_dirs{&manifest_dirs};
  for (auto& m : manifest_dirs) {
    m->Start([&engine](const v1::SyncRequest& req, v1::SyncResponse* resp) { return engine.Sync(req, resp); });
  }

  ProxyService service(&engine, &policy_holder, flags.insecure_listen && flags.tls_cert.empty());
  if (!manifest_dirs.empty()) {
    service.SetStatusHook([&manifest_dirs](v1::StatusResponse* r) {
      for (const auto& m : manifest_dirs) *r->add_manifest_dirs() = m->Status();
    });
  }
  grpc::EnableDefaultHealthCheckService(true);
  absl::StatusOr<std::unique_ptr<ReflectionIndex>> reflection = ReflectionIndex::Create(
      {v1::Proxy::service_full_name(), "grpc.health.v1.Health", ::grpc::reflection::v1alpha::ServerReflection::service_full_name(),
       ::grpc::reflection::v1::ServerReflection::service_full_name()});
  if (!reflection.ok()) {
    log::Error("cannot build the reflection index", {{"error", std::string(reflection.status().message())}});
    return 1;
  }
  ReflectionV1Alpha reflection_v1alpha(reflection->get());
  ReflectionV1 reflection_v1(reflection->get());
  grpc::ServerBuilder builder;
  // Unix sockets are accepted by nftproxy (server/unix_listener.h), TCP by
  // gRPC, with TLS unless --insecure-listen allowed plaintext on loopback.
  std::vector<std::unique_ptr<UnixListener>> unix_listeners;
  for (const Address& addr : listen) {
    if (addr.kind == Address::Kind::kUnix) {
      if (!PrepareUnixSocket(addr.path, &err)) {
        log::Error("cannot prepare the socket", {{"listen", addr.ToString()}, {"error", err}});
        return 1;
      }
      absl::StatusOr<std::unique_ptr<UnixListener>> l = UnixListener::Listen(addr.path, socket_mode, socket_gid);
      if (!l.ok()) {
        log::Error("cannot listen", {{"listen", addr.ToString()}, {"error", std::string(l.status().message())}});
        return 1;
      }
      unix_listeners.push_back(std::move(*l));
      continue;
    }
    builder.AddListeningPort(addr.GrpcTarget(), tcp_credentials);
  }
  builder.RegisterService(&service);
  builder.RegisterService(&reflection_v1alpha);
  builder.RegisterService(&reflection_v1);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint32_t>(max_request_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(512 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    log::Error("could not listen on the requested addresses", {{"listen", absl::StrJoin(flags.listen, " ")}});
    return 1;
  }
  for (auto& l : unix_listeners) l->Start(server.get());
  // Per-service health: grpc.health.v1.Health/Check {"service": "nftproxy.v1.Proxy"}.
  server->GetHealthCheckService()->SetServingStatus(v1::Proxy::service_full_name(), true);
  std::vector<std::string> shown;
  for (const Address& a : listen) shown.push_back(a.ToString());
  log::Info("serving", {{"version", NFTPROXY_VERSION},
                        {"table", absl::StrCat("inet ", flags.table)},
                        {"listen", absl::StrJoin(shown, " ")},
                        {"tls", flags.tls_cert.empty() ? "off" : flags.tls_client_ca.empty() ? "on" : "mutual"},
                        {"authz", flags.authz.empty() ? "default" : flags.authz},
                        {"node", flags.node_name}});

  std::thread waiter([&] {
    for (;;) {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig == SIGHUP) {
        // The policy is replaced whole, or kept when the new one is wrong.
        if (flags.authz.empty()) continue;
        absl::StatusOr<Policy> loaded = Policy::Load(flags.authz);
        if (!loaded.ok()) {
          log::Error("kept the authorization policy in force: the new one is refused",
                     {{"authz", flags.authz}, {"error", std::string(loaded.status().message())}});
          continue;
        }
        const size_t rules = loaded->rules();
        policy_holder.Set(std::make_shared<const Policy>(std::move(*loaded)));
        log::Info("reloaded the authorization policy", {{"authz", flags.authz}, {"rules", absl::StrCat(rules)}});
        continue;
      }
      log::Info("shutting down; the rules stay installed", {{"signal", strsignal(sig)}});
      for (auto& l : unix_listeners) l->Stop();  // no new connections; the socket files go
      for (auto& m : manifest_dirs) m->Stop();
      engine.Shutdown();  // ends Watch streams first, so shutdown does not wait for them
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      return;
    }
  });
  server->Wait();
  waiter.join();
  return 0;
}

}  // namespace nftproxy::server
