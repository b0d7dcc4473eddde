// nftproxy_bench: the scale benchmark of issue 4.
//
// In one run, in namespaces it creates (npx-bench-<pid>-*), it measures
//   - nftproxy (a real `nftproxy serve` over its unix socket): full sync of N
//     services x E endpoints in ONE Sync, no-op re-Sync (and re-Apply),
//     single endpoint changes through Apply (p50/p99), server RSS;
//   - the same workloads as kube-proxy's nftables ruleset loaded with
//     `nft -f` and as its iptables ruleset loaded with iptables-restore;
//   - new TCP connections per second through a router namespace to the
//     first and the last of 10,000 services, for nftproxy and the iptables
//     shape, against no proxy rules at all;
// and prints the tables with ratios. Needs root. See BENCHMARKS.md.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"
#include "tests/bench/conn_rate.h"
#include "tests/bench/kube_shapes.h"
#include "tests/bench/lab.h"
#include "tests/bench/nft_events.h"
#include "tests/bench/workload.h"

#ifndef NFTPROXY_BENCH_DEFAULT_BIN
#define NFTPROXY_BENCH_DEFAULT_BIN ""
#endif
#ifndef NFTPROXY_BENCH_SOURCE_DIR
#define NFTPROXY_BENCH_SOURCE_DIR ""
#endif

namespace npxbench {
namespace {

namespace v1 = ::nftproxy::v1;

// ---- options ----------------------------------------------------------------

enum Impl { kNftproxy = 0, kKubeNft = 1, kKubeIpt = 2, kNumImpls = 3 };
const char* const kImplKeys[] = {"nftproxy", "kube-nft", "iptables"};

struct Options {
  std::vector<int> scales = {1000, 10000, 100000};
  bool scales_set = false;
  bool quick = false;
  std::string nftproxy;
  std::vector<std::string> serve_args;
  int endpoints = 10;
  int namespaces = 1;
  int changes = -1;           // per scale; -1: 200 up to 10,000 services, 50 above (quick: 50 / 20)
  int full_reps = 3;          // nftproxy full syncs per scale, each into a fresh namespace and server
  double budget_s = -1;       // per baseline and scale; -1: 900 (quick: 60)
  double dp_seconds = -1;     // per slice; -1: 1 (quick: 0.5)
  int dp_reps = -1;           // slices per figure; -1: 9 (quick: 4)
  int dp_services = 10000;
  bool control_plane = true;
  bool dataplane = true;
  bool pin = true;            // client on CPU 0, backend on CPU 1
  bool impls[kNumImpls] = {true, true, true};
  uint32_t seed = 1;
};

const char kUsage[] = R"(Usage: nftproxy_bench [flags]      (as root)

Measures nftproxy against kube-proxy's nftables and iptables rulesets, in
network namespaces it creates and removes (npx-bench-<pid>-*).

Flags:
  --scales N,N,...     service counts for the control-plane runs
                       (default 1000,10000,100000; --quick: 1000,10000)
  --quick              scales 1000,10000, fewer samples, a 120 s budget: minutes
  --nftproxy PATH      the nftproxy binary (default: the one in the build dir)
  --serve-arg ARG      extra argument for `nftproxy serve` (repeatable)
  --endpoints N        endpoints per service (default 10)
  --namespaces N       spread the services over N namespaces (default 1)
  --changes N          single changes per scale (default 200, 50 above 10,000
                       services; --quick: 50 / 20)
  --full-reps N        nftproxy full syncs per scale, each into a fresh
                       namespace and server; the median is shown (default 3)
  --budget SECONDS     time allowed per implementation and scale; baselines whose
                       extrapolated time exceeds it are skipped and say so
                       (default 600; --quick: 120)
  --impl LIST          any of nftproxy,kube-nft,iptables (default all)
  --dp-services N      services in the data-plane runs (default 10000)
  --dp-slices N        measurements per data-plane figure, interleaved with the
                       other figures' (default 9; --quick: 4); the median is shown
  --dp-seconds S       seconds per measurement (default 1; --quick: 0.5)
  --no-dataplane       skip the connection-rate measurements
  --no-control-plane   only the connection-rate measurements
  --no-pin             do not pin the data-plane client to CPU 0 and the backend to CPU 1
  --seed N             seed for the choice of changed services (default 1)
)";

bool ParseInt(const std::string& s, int* out) { return absl::SimpleAtoi(s, out); }

absl::Status ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      exit(0);
    }
    const bool flag_only =
        a == "--quick" || a == "--no-dataplane" || a == "--no-control-plane" || a == "--no-pin";
    if (!flag_only) {
      if (size_t eq = a.find('='); eq != std::string::npos) {
        v = a.substr(eq + 1);
        a = a.substr(0, eq);
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        return absl::InvalidArgumentError(a + ": needs a value");
      }
    }
    bool ok = true;
    if (a == "--quick") {
      o->quick = true;
    } else if (a == "--no-dataplane") {
      o->dataplane = false;
    } else if (a == "--no-pin") {
      o->pin = false;
    } else if (a == "--no-control-plane") {
      o->control_plane = false;
    } else if (a == "--scales") {
      o->scales.clear();
      o->scales_set = true;
      for (absl::string_view p : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        int n = 0;
        ok = ok && absl::SimpleAtoi(p, &n) && n >= 1 && n <= kMaxServices;
        o->scales.push_back(n);
      }
      ok = ok && !o->scales.empty();
    } else if (a == "--nftproxy") {
      o->nftproxy = v;
    } else if (a == "--serve-arg") {
      o->serve_args.push_back(v);
    } else if (a == "--endpoints") {
      ok = ParseInt(v, &o->endpoints) && o->endpoints >= 1 && o->endpoints <= 200;
    } else if (a == "--namespaces") {
      ok = ParseInt(v, &o->namespaces) && o->namespaces >= 1;
    } else if (a == "--changes") {
      ok = ParseInt(v, &o->changes) && o->changes >= 0;
    } else if (a == "--full-reps") {
      ok = ParseInt(v, &o->full_reps) && o->full_reps >= 1;
    } else if (a == "--budget") {
      ok = absl::SimpleAtod(v, &o->budget_s) && o->budget_s > 0;
    } else if (a == "--dp-services") {
      ok = ParseInt(v, &o->dp_services) && o->dp_services >= 1 && o->dp_services <= kMaxServices;
    } else if (a == "--dp-seconds") {
      ok = absl::SimpleAtod(v, &o->dp_seconds) && o->dp_seconds > 0;
    } else if (a == "--dp-slices") {
      ok = ParseInt(v, &o->dp_reps) && o->dp_reps >= 1;
    } else if (a == "--seed") {
      int s = 0;
      ok = ParseInt(v, &s);
      o->seed = static_cast<uint32_t>(s);
    } else if (a == "--impl") {
      for (bool& b : o->impls) b = false;
      for (absl::string_view p : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        bool known = false;
        for (int k = 0; k < kNumImpls; ++k) {
          if (p == kImplKeys[k]) o->impls[k] = known = true;
        }
        ok = ok && known;
      }
    } else {
      return absl::InvalidArgumentError("unknown flag " + a);
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat(a, ": invalid value \"", v, "\""));
  }
  if (o->quick && !o->scales_set) o->scales = {1000, 10000};
  if (o->budget_s < 0) o->budget_s = o->quick ? 120 : 600;
  if (o->dp_seconds < 0) o->dp_seconds = o->quick ? 0.5 : 1;
  if (o->dp_reps < 0) o->dp_reps = o->quick ? 4 : 9;
  return absl::OkStatus();
}

int ChangesFor(const Options& o, int services) {
  if (o.changes >= 0) return o.changes;
  if (o.quick) return services > 10000 ? 20 : 50;
  return services > 10000 ? 50 : 200;
}

// ---- small helpers ------------------------------------------------------------

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  // Nearest rank.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  if (rank < 1) rank = 1;
  return v[std::min(rank, v.size()) - 1];
}
double Median(const std::vector<double>& v) {
  if (v.empty()) return -1;
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

std::string Dur(double s) {
  if (s < 0) return "-";
  if (s < 0.001) return absl::StrFormat("%.0f us", s * 1e6);
  if (s < 0.01) return absl::StrFormat("%.2f ms", s * 1e3);
  if (s < 1) return absl::StrFormat("%.1f ms", s * 1e3);
  if (s < 100) return absl::StrFormat("%.2f s", s);
  return absl::StrFormat("%.0f s", s);
}

std::string Ratio(double num, double den) {
  if (num <= 0 || den <= 0) return "-";
  const double r = num / den;
  if (r >= 100) return absl::StrFormat("%.0fx", r);
  if (r >= 10) return absl::StrFormat("%.1fx", r);
  return absl::StrFormat("%.2fx", r);
}

std::string Mb(long kb) {
  if (kb <= 0) return "-";
  return absl::StrFormat("%.0f MB", kb / 1024.0);
}

std::string Thousands(long long n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string RStrip(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string Pad(const std::string& s, size_t w, bool right = false) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

void Progress(const std::string& msg) {
  std::cerr << "[" << absl::StrFormat("%7.1f", NowSeconds()) << "] " << msg << std::endl;
}

bool FileExists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

std::string Which(const std::string& tool) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"}) {
    const std::string p = std::string(dir) + "/" + tool;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string ReadTail(const std::string& path, size_t max) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (s.size() > max) s = "..." + s.substr(s.size() - max);
  return s;
}

// ---- the workload as nftproxy API objects -------------------------------------

void FillSlice(const Workload& w, int i, const std::vector<int>& eps, v1::EndpointSlice* s) {
  s->mutable_metadata()->set_namespace_(w.Namespace(i));
  s->mutable_metadata()->set_name(w.Name(i) + "-a");
  s->set_service_name(w.Name(i));
  for (int j : eps) s->add_endpoints()->add_addresses(Ip4(w.Endpoint(i, j)));
}

std::vector<int> BaseEndpoints(const Workload& w) {
  std::vector<int> eps;
  for (int j = 0; j < w.endpoints; ++j) eps.push_back(j);
  return eps;
}

// The source that owns the benchmark's resources.
constexpr char kSource[] = "bench";

v1::ApplyRequest FullRequest(const Workload& w) {
  v1::ApplyRequest req;
  req.set_source(kSource);
  const std::vector<int> eps = BaseEndpoints(w);
  req.mutable_upserts()->Reserve(2 * w.services);
  for (int i = 0; i < w.services; ++i) {
    v1::Service* svc = req.add_upserts()->mutable_service();
    svc->mutable_metadata()->set_namespace_(w.Namespace(i));
    svc->mutable_metadata()->set_name(w.Name(i));
    svc->mutable_spec()->add_cluster_ips(Ip4(w.Vip(i)));
    v1::ServicePort* p = svc->mutable_spec()->add_ports();
    p->set_protocol(v1::TCP);
    p->set_port(w.port);
    p->set_target_port(w.target_port);
    FillSlice(w, i, eps, req.add_upserts()->mutable_endpoint_slice());
  }
  return req;
}

// The whole workload as one Sync: what a cluster adapter sends.
v1::SyncRequest FullSync(const Workload& w) {
  v1::SyncRequest req;
  req.set_source(kSource);
  *req.mutable_resources() = std::move(*FullRequest(w).mutable_upserts());
  return req;
}

// The single-change sequence, the same for every implementation: change 2k
// adds the extra endpoint to a random service, change 2k+1 removes it again.
struct Change {
  int svc;
  std::vector<int> eps;  // endpoints after the change
  int removed;           // endpoint index removed, or -1
};

std::vector<Change> ChangeSequence(const Workload& w, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, w.services - 1);
  std::vector<Change> out;
  const std::vector<int> base = BaseEndpoints(w);
  std::vector<int> plus = base;
  plus.push_back(w.endpoints);
  int svc = 0;
  for (int k = 0; k < n; ++k) {
    if (k % 2 == 0) {
      svc = pick(rng);
      out.push_back({svc, plus, -1});
    } else {
      out.push_back({svc, base, w.endpoints});
    }
  }
  return out;
}

// One EndpointSlice upsert.
v1::ApplyRequest ChangeRequest(const Workload& w, const Change& ch) {
  v1::ApplyRequest req;
  req.set_source(kSource);
  FillSlice(w, ch.svc, ch.eps, req.add_upserts()->mutable_endpoint_slice());
  return req;
}

// ---- nftproxy server ----------------------------------------------------------

class Server {
 public:
  ~Server() { Stop(); }

  // `extra`: more flags for serve, after --serve-arg's.
  absl::Status Start(const Options& o, const std::string& netns, const std::string& tag,
                     const std::vector<std::string>& extra = {}) {
    Lab& lab = Lab::Get();
    sock_ = lab.tmpdir() + "/" + tag + ".sock";
    log_ = lab.tmpdir() + "/" + tag + ".log";
    // A state directory of its own, as a real deployment has: the cost of
    // recording each change is part of what is measured.
    const std::string state = lab.tmpdir() + "/" + tag + ".state";
    // Writes of 100 ms or more are logged with the time of each phase; the
    // full sync's line goes into the notes.
    std::vector<std::string> argv = {o.nftproxy, "serve",   "--listen",    "unix://" + sock_, "--state-dir", state,
                                     "--table",  "nftproxy", "--node-name", "bench", "--log-writes-over", "100ms"};
    argv.insert(argv.end(), o.serve_args.begin(), o.serve_args.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto pid = lab.Spawn(netns, argv, log_);
    if (!pid.ok()) return pid.status();
    pid_ = *pid;
    const double deadline = NowSeconds() + 30;
    while (!FileExists(sock_)) {
      if (!lab.Alive(pid_)) {
        pid_ = 0;
        return absl::InternalError("nftproxy serve exited: " + ReadTail(log_, 2000));
      }
      if (NowSeconds() > deadline) return absl::DeadlineExceededError("nftproxy serve did not create its socket");
      usleep(20000);
    }
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(1 << 30);
    args.SetMaxReceiveMessageSize(1 << 30);
    channel_ = grpc::CreateCustomChannel("unix:" + sock_, grpc::InsecureChannelCredentials(), args);
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20))) {
      return absl::UnavailableError("cannot connect to nftproxy at " + sock_ + ": " + ReadTail(log_, 2000));
    }
    stub_ = v1::Proxy::NewStub(channel_);
    return absl::OkStatus();
  }

  void Stop() {
    stub_.reset();
    channel_.reset();
    if (pid_ > 0) Lab::Get().Stop(pid_, 10);
    pid_ = 0;
  }

  // Wall time of one Apply or Sync RPC; fails with the server's status.
  absl::StatusOr<double> Apply(const v1::ApplyRequest& req, double deadline_s) {
    return Timed<v1::ApplyResponse>("Apply", &v1::Proxy::Stub::Apply, req, deadline_s);
  }
  absl::StatusOr<double> Sync(const v1::SyncRequest& req, double deadline_s) {
    return Timed<v1::SyncResponse>("Sync", &v1::Proxy::Stub::Sync, req, deadline_s);
  }

  absl::StatusOr<v1::StatusResponse> Status() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::StatusResponse resp;
    grpc::Status s = stub_->Status(&ctx, v1::StatusRequest(), &resp);
    if (!s.ok()) return absl::InternalError("Status: " + s.error_message());
    return resp;
  }

  pid_t pid() const { return pid_; }
  std::string LogTail() const { return ReadTail(log_, 1500); }
  // The last line of the server's log that contains `text` ("" if none).
  std::string LastLogLine(const std::string& text) const {
    std::ifstream in(log_);
    std::string line, last;
    while (std::getline(in, line)) {
      if (line.find(text) != std::string::npos) last = line;
    }
    return last;
  }

 private:
  template <typename Response, typename Request>
  absl::StatusOr<double> Timed(const char* name,
                               grpc::Status (v1::Proxy::Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
                               const Request& req, double deadline_s) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<long long>(deadline_s * 1000)));
    Response resp;
    const double t0 = NowSeconds();
    grpc::Status s = (stub_.get()->*rpc)(&ctx, req, &resp);
    const double t = NowSeconds() - t0;
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          absl::StrCat(name, ": ", s.error_message(), " (gRPC code ", s.error_code(), ")"));
    }
    return t;
  }

  pid_t pid_ = 0;
  std::string sock_, log_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Proxy::Stub> stub_;
};

// ---- control plane --------------------------------------------------------------

struct CpResult {
  bool ran = false;
  std::string note;          // skipped / error, shown instead of or after numbers
  double full_s = -1;
  double full_kernel_s = -1;  // kernel CPU time of the loading process
  double server_commit_s = -1;  // nftproxy: the server's own sync duration
  size_t request_bytes = 0;
  std::vector<double> noop;
  std::vector<double> apply_noop;  // nftproxy: the no-op as an Apply (reply with every resource)
  std::string server_log;          // nftproxy: the server's log line of the full sync (its phases)
  std::vector<double> full_samples;  // nftproxy: every full sync measured (full_s is their median)
  int noop_commits = -1;       // max nf_tables commits seen for one no-op
  std::string noop_note;
  std::vector<double> changes;
  std::vector<double> change_objects;
  int planned_changes = 0;
  std::string changes_note;
  long rss_kb = -1;            // nftproxy: server VmRSS after the full sync
  long peak_kb = -1;           // nftproxy: VmHWM; baselines: peak RSS of the loader
  long settled_kb = -1;        // nftproxy: VmRSS after the changes and 2 s idle (memory of the installed state)
  int checks_ok = 0, checks = 0;
  std::string failed_checks;   // services whose VIP did not answer
};

// Routes in a control-plane namespace so that connections from inside it to
// any VIP can be checked: every endpoint address is local (198.18.0.0/20 on
// lo); VIPs are routed to a veth pair inside the namespace, so connect() finds
// a route and the output hook's DNAT then sends the packet to lo. The source
// address, 198.18.15.250, is local, inside the cluster CIDR (no masquerade)
// and never an endpoint (no hairpin masquerade, which fails on lo).
absl::Status SetupCheckRoutes(const std::string& ns) {
  Lab& lab = Lab::Get();
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"ip", "-n", ns, "link", "add", "npxb0", "type", "veth", "peer", "name", "npxb1"},
           {"ip", "-n", ns, "link", "set", "npxb0", "up"},
           {"ip", "-n", ns, "link", "set", "npxb1", "up"},
           {"ip", "-n", ns, "route", "add", "local", "198.18.0.0/20", "dev", "lo"},
           {"ip", "-n", ns, "route", "add", "198.18.0.0/15", "dev", "npxb0", "src", "198.18.15.250"}}) {
    if (auto s = lab.RunOk("", argv); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Connections to the first, middle and last service and to the last changed one.
void CheckConnections(const std::string& ns, const Workload& w, int last_changed, CpResult* r) {
  std::vector<int> targets = {0, w.services / 2, w.services - 1};
  if (last_changed >= 0) targets.push_back(last_changed);
  for (int i : targets) {
    ++r->checks;
    if (CanConnect(ns, w.Vip(i), w.port, 1000)) {
      ++r->checks_ok;
    } else {
      absl::StrAppend(&r->failed_checks, r->failed_checks.empty() ? "" : ", ", w.Name(i), " (", Ip4(w.Vip(i)), ")");
    }
  }
}

struct History {
  int n;
  double full, reapply, change;
  double peak_kb;  // peak RSS of the loader
};

long MemAvailableKb() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  long v = 0;
  std::string unit;
  while (f >> key >> v >> unit) {
    if (key == "MemAvailable:") return v;
  }
  return 0;
}

// Extrapolates a measured time to n services from earlier scales: with two
// points the measured exponent (clamped to 1..2.5), with one the prior.
double Extrapolate(const std::vector<History>& h, int n, double History::*field, double prior_k) {
  std::vector<const History*> pts;
  for (const History& x : h) {
    if (x.*field > 0 && x.n < n) pts.push_back(&x);
  }
  if (pts.empty()) return -1;
  const History* last = pts.back();
  double k = prior_k;
  if (pts.size() >= 2) {
    const History* prev = pts[pts.size() - 2];
    if (prev->n < last->n && prev->*field > 0) {
      k = std::log(last->*field / prev->*field) / std::log(static_cast<double>(last->n) / prev->n);
      k = std::min(2.5, std::max(1.0, k));
    }
  }
  return last->*field * std::pow(static_cast<double>(n) / last->n, k);
}

CpResult RunNftproxyCp(const Options& o, const Workload& w) {
  CpResult r;
  Lab& lab = Lab::Get();
  const std::string tag = absl::StrCat("np", w.services);
  auto ns = lab.AddNetns(tag);
  if (!ns.ok()) {
    r.note = std::string(ns.status().message());
    return r;
  }
  AcceptServer check_srv;
  NftEventCounter events;
  Server srv;
  const std::vector<Change> changes = ChangeSequence(w, ChangesFor(o, w.services), o.seed);
  r.planned_changes = static_cast<int>(changes.size());
  const v1::SyncRequest full = FullSync(w);
  // Extra full syncs first, each into a fresh namespace and server; the
  // figure is the median of these and the main one's.
  std::vector<double> samples;
  const double extras_start = NowSeconds();
  for (int k = 1; k < o.full_reps && NowSeconds() - extras_start < o.budget_s / 4; ++k) {
    const std::string rtag = absl::StrCat(tag, "r", k);
    auto rns = lab.AddNetns(rtag);
    if (!rns.ok()) break;
    Server extra;
    if (extra.Start(o, *rns, rtag).ok()) {
      if (auto t = extra.Sync(full, o.budget_s); t.ok()) samples.push_back(*t);
    }
    extra.Stop();
    lab.DelNetns(*rns);
  }
  absl::Status st = SetupCheckRoutes(*ns);
  if (st.ok()) st = check_srv.Start(*ns, w.target_port);
  if (st.ok()) st = srv.Start(o, *ns, tag);
  const double start = NowSeconds();
  if (st.ok()) {
    r.ran = true;
    r.request_bytes = full.ByteSizeLong();
    const CpuTimes c0 = ReadCpuTimes(srv.pid());
    auto t = srv.Sync(full, o.budget_s);
    const CpuTimes c1 = ReadCpuTimes(srv.pid());
    if (!t.ok()) {
      r.note = absl::StrCat("full sync failed after ", Dur(NowSeconds() - start), ": ", t.status().message());
      if (absl::IsResourceExhausted(t.status())) {
        r.note += absl::StrCat(" [request is ", Thousands(static_cast<long long>(r.request_bytes)), " bytes]");
      }
    } else {
      samples.push_back(*t);
      r.full_samples = samples;
      r.full_s = Median(samples);
      r.full_kernel_s = c1.sys_s - c0.sys_s;
      r.server_log = srv.LastLogLine("method=Sync");
      r.rss_kb = ReadStatusKb(srv.pid(), "VmRSS");
      r.peak_kb = ReadStatusKb(srv.pid(), "VmHWM");
      if (auto status = srv.Status(); status.ok()) {
        r.server_commit_s = status->last_sync_duration().seconds() + status->last_sync_duration().nanos() / 1e9;
        if (status->services() != static_cast<uint32_t>(w.services)) {
          r.note = absl::StrCat("server reports ", status->services(), " services, want ", w.services);
        }
      }
      Progress(absl::StrCat("nftproxy ", Thousands(w.services), ": full sync ", Dur(r.full_s), " (request ",
                            Thousands(static_cast<long long>(r.request_bytes)), " bytes, server RSS ", Mb(r.rss_kb),
                            ")"));
      // Every later RPC gets what is left of the budget (at least 10 s).
      auto left = [&] { return std::max(10.0, o.budget_s - (NowSeconds() - start)); };
      const int noops = w.services > 10000 ? 3 : 5;
      for (int k = 0; k < noops; ++k) {
        if (k > 0 && NowSeconds() - start > o.budget_s) {
          r.noop_note = absl::StrCat("stopped after ", k, " re-applies: budget ", o.budget_s, " s");
          break;
        }
        auto n = srv.Sync(full, left());
        if (!n.ok()) {
          r.noop_note = std::string(n.status().message());
          break;
        }
        r.noop.push_back(*n);
      }
      // The same no-op through Apply, whose reply carries every resource.
      const v1::ApplyRequest apply = FullRequest(w);
      for (int k = 0; k < noops && NowSeconds() - start < o.budget_s; ++k) {
        auto n = srv.Apply(apply, left());
        if (!n.ok()) {
          r.noop_note = absl::StrCat("Apply: ", n.status().message());
          break;
        }
        r.apply_noop.push_back(*n);
      }
      // Untimed probes with an nf_tables event listener (a listener makes the
      // kernel build a notification per object, so none listens above):
      // commits caused by a no-op, objects touched by a change.
      if (NowSeconds() - start < o.budget_s && events.Open(*ns).ok()) {
        events.Drain();
        if (srv.Sync(full, left()).ok()) r.noop_commits = events.Drain().commits;
        for (const Change& ch : ChangeSequence(w, 2, o.seed + 7919)) {
          events.Drain();
          if (!srv.Apply(ChangeRequest(w, ch), left()).ok()) break;
          const NftEventCounter::Counts c = events.Drain();
          if (!c.overflow) r.change_objects.push_back(c.objects);
        }
        events.Close();
      }
      int last_changed = -1;
      for (const Change& ch : changes) {
        if (NowSeconds() - start > o.budget_s) {
          r.changes_note = absl::StrCat("stopped after ", r.changes.size(), " changes: budget ", o.budget_s, " s");
          break;
        }
        auto n = srv.Apply(ChangeRequest(w, ch), left());
        if (!n.ok()) {
          r.changes_note = std::string(n.status().message());
          break;
        }
        r.changes.push_back(*n);
        last_changed = ch.svc;
      }
      CheckConnections(*ns, w, last_changed, &r);
      // What the server keeps for the installed state, once the allocator
      // has returned the sync's temporary memory (it decays within ~1 s).
      usleep(2000000);
      r.settled_kb = ReadStatusKb(srv.pid(), "VmRSS");
    }
  } else {
    r.note = std::string(st.message());
  }
  srv.Stop();
  check_srv.Stop();
  lab.DelNetns(*ns);
  return r;
}

// kube-proxy nftables (nft -f) or iptables (iptables-restore) shape.
CpResult RunKubeCp(const Options& o, const Workload& w, Impl impl, const std::string& ipt_restore,
                   const std::vector<History>& hist) {
  CpResult r;
  Lab& lab = Lab::Get();
  const bool nft = impl == kKubeNft;
  const std::vector<Change> changes = ChangeSequence(w, ChangesFor(o, w.services), o.seed);
  r.planned_changes = static_cast<int>(changes.size());

  // Skip what would not fit the budget, from the earlier scales.
  // With one earlier scale only, assume the growth measured on this machine
  // kind from 1,000 to 10,000 services (kube-proxy nftables: load ~N^1.7,
  // reload over itself ~N^2.2; iptables ~N^1.3 and ~N^1.45); with two, the
  // growth between them.
  const double est_full = Extrapolate(hist, w.services, &History::full, nft ? 1.7 : 1.3);
  const double est_reapply = Extrapolate(hist, w.services, &History::reapply, nft ? 2.2 : 1.45);
  const double est_change = Extrapolate(hist, w.services, &History::change, 1.0);
  if (est_full > o.budget_s) {
    r.note = absl::StrCat("skipped (est. full sync ", Dur(est_full), " > budget ", Dur(o.budget_s), ")");
    return r;
  }
  // nft needs ~130 KB per kube-proxy service of 10 endpoints while loading,
  // iptables-restore ~40 KB (measured); do not push the machine into OOM.
  double est_peak_kb = Extrapolate(hist, w.services, &History::peak_kb, 1.0);
  if (est_peak_kb < 0) est_peak_kb = (nft ? 130.0 : 40.0) * w.services * w.endpoints / 10.0;
  const long avail_kb = MemAvailableKb();
  if (avail_kb > 0 && est_peak_kb > 0.6 * avail_kb) {
    r.note = absl::StrFormat("skipped (est. peak memory of the loader %.1f GB > 60%% of the %.1f GB available)",
                             est_peak_kb / 1048576.0, avail_kb / 1048576.0);
    return r;
  }

  const std::string tag = absl::StrCat(nft ? "kn" : "ki", w.services);
  auto ns = lab.AddNetns(tag);
  if (!ns.ok()) {
    r.note = std::string(ns.status().message());
    return r;
  }
  AcceptServer check_srv;
  NftEventCounter events;
  absl::Status st = SetupCheckRoutes(*ns);
  if (st.ok()) st = check_srv.Start(*ns, w.target_port);
  const std::string full_path = lab.tmpdir() + "/" + tag + (nft ? ".nft" : ".rules");
  const std::string change_path = lab.tmpdir() + "/" + tag + "-change" + (nft ? ".nft" : ".rules");
  if (st.ok()) {
    FILE* f = fopen(full_path.c_str(), "w");
    if (!f) {
      st = absl::InternalError("cannot write " + full_path);
    } else {
      if (nft) {
        WriteKubeNftFull(w, f);
      } else {
        WriteIptablesFull(w, f);
      }
      fclose(f);
    }
  }
  auto load = [&](const std::string& path, bool noflush, double timeout) {
    RunOptions ro;
    ro.timeout_s = std::max(1.0, timeout);
    if (nft) return lab.Run(*ns, {"nft", "-f", path}, ro);
    ro.stdin_path = path;
    std::vector<std::string> argv = {ipt_restore, "-w", "5"};
    if (noflush) argv.push_back("--noflush");
    return lab.Run(*ns, argv, ro);
  };
  const double start = NowSeconds();
  auto left = [&] { return o.budget_s - (NowSeconds() - start); };
  if (st.ok()) {
    r.ran = true;
    struct stat fst;
    if (stat(full_path.c_str(), &fst) == 0) r.request_bytes = static_cast<size_t>(fst.st_size);
    ProcResult p = load(full_path, false, left());
    if (!p.ok()) {
      r.note = "full load failed: " + p.Describe();
      if (p.timed_out) r.note = absl::StrCat("full load > ", Dur(p.wall_s), " (timed out, budget)");
    } else {
      r.full_s = p.wall_s;
      r.full_kernel_s = p.sys_s;
      r.peak_kb = p.maxrss_kb;
      Progress(absl::StrCat(kImplKeys[impl], " ", Thousands(w.services), ": full load ", Dur(r.full_s), " (kernel ",
                            Dur(p.sys_s), ", ", Thousands(static_cast<long long>(r.request_bytes)), " bytes of text)"));
      int last_changed = -1;
      auto change = [&](const Change& ch) {
        FILE* f = fopen(change_path.c_str(), "w");
        if (!f) {
          ProcResult fail;
          fail.output = "cannot write " + change_path;
          return fail;
        }
        if (nft) {
          WriteKubeNftChange(w, ch.svc, ch.eps, ch.removed, f);
        } else {
          WriteIptablesChange(w, ch.svc, ch.eps, ch.removed, f);
        }
        fclose(f);
        return load(change_path, true, left());
      };
      // Untimed probe of the objects one change touches (see RunNftproxyCp).
      if (nft && events.Open(*ns).ok()) {
        for (const Change& ch : ChangeSequence(w, 2, o.seed + 7919)) {
          events.Drain();
          if (!change(ch).ok()) break;
          const NftEventCounter::Counts c = events.Drain();
          if (!c.overflow) r.change_objects.push_back(c.objects);
        }
        events.Close();
      }
      // kube-proxy has no no-op: its resync writes the whole ruleset again.
      // It runs last; the changes leave it the time it is expected to take.
      const double reapply_est = est_reapply > 0 ? est_reapply : 2.5 * r.full_s;
      const bool try_reapply = reapply_est < 0.9 * left();
      const double reserve = try_reapply ? 1.2 * reapply_est : 0;
      const double per_change = est_change > 0 ? est_change : 0;
      if (per_change > 0 && 2 * per_change > left() - reserve) {
        r.changes_note = absl::StrCat("skipped (est. ", Dur(per_change), " per change)");
      } else {
        for (const Change& ch : changes) {
          if (left() - reserve <= 0) {
            r.changes_note = absl::StrCat("stopped after ", r.changes.size(), " changes: budget ", o.budget_s, " s");
            break;
          }
          ProcResult q = change(ch);
          if (!q.ok()) {
            r.changes_note = q.timed_out ? "timed out (budget)" : "change failed: " + q.Describe();
            break;
          }
          r.changes.push_back(q.wall_s);
          last_changed = ch.svc;
        }
      }
      if (!try_reapply || reapply_est > left()) {
        r.noop_note = absl::StrCat("skipped (est. ", Dur(reapply_est), ", budget left ", Dur(std::max(0.0, left())), ")");
      } else {
        ProcResult q = load(full_path, false, left());
        if (q.ok()) {
          r.noop.push_back(q.wall_s);
        } else {
          r.noop_note = q.timed_out ? absl::StrCat("> ", Dur(q.wall_s), " (timed out, budget)") : q.Describe();
        }
      }
      CheckConnections(*ns, w, last_changed, &r);
    }
  } else {
    r.note = std::string(st.message());
  }
  unlink(full_path.c_str());
  unlink(change_path.c_str());
  check_srv.Stop();
  lab.DelNetns(*ns);
  return r;
}

// ---- data plane ------------------------------------------------------------------

struct Topology {
  std::string client, router, backend;
  std::unique_ptr<AcceptServer> backend_srv;
};

constexpr uint32_t kBackendAddr = (198u << 24) | (18u << 16) | (2u << 8) | 1u;  // 198.18.2.1

absl::Status MakeTopology(const std::string& tag, int endpoints, bool pin, Topology* t) {
  Lab& lab = Lab::Get();
  for (auto [name, field] : {std::pair<const char*, std::string*>{"c", &t->client}, {"r", &t->router},
                             {"b", &t->backend}}) {
    auto ns = lab.AddNetns(tag + name);
    if (!ns.ok()) return ns.status();
    *field = *ns;
  }
  const std::string& c = t->client;
  const std::string& r = t->router;
  const std::string& b = t->backend;
  std::vector<std::vector<std::string>> cmds = {
      {"ip", "-n", r, "link", "add", "to-client", "type", "veth", "peer", "name", "eth0", "netns", c},
      {"ip", "-n", r, "link", "add", "to-backend", "type", "veth", "peer", "name", "eth0", "netns", b},
      {"ip", "-n", r, "addr", "add", "198.18.1.254/24", "dev", "to-client"},
      {"ip", "-n", r, "addr", "add", "198.18.2.254/24", "dev", "to-backend"},
      {"ip", "-n", r, "link", "set", "to-client", "up"},
      {"ip", "-n", r, "link", "set", "to-backend", "up"},
      {"ip", "-n", c, "addr", "add", "198.18.1.1/24", "dev", "eth0"},
      {"ip", "-n", c, "link", "set", "eth0", "up"},
      {"ip", "-n", c, "route", "add", "default", "via", "198.18.1.254"},
      {"ip", "-n", b, "link", "set", "eth0", "up"},
  };
  // The backend holds every data-plane endpoint address (Workload::Endpoint).
  for (int j = 0; j <= endpoints; ++j) {
    cmds.push_back({"ip", "-n", b, "addr", "add", Ip4(kBackendAddr + static_cast<uint32_t>(j)) + "/24", "dev", "eth0"});
  }
  cmds.push_back({"ip", "-n", b, "route", "add", "default", "via", "198.18.2.254"});
  for (const auto& argv : cmds) {
    if (auto s = lab.RunOk("", argv); !s.ok()) return s;
  }
  // Forwarding on, no reverse-path filtering in the router.
  if (auto s = lab.EnterNetns(r); !s.ok()) return s;
  bool ok = true;
  for (const char* key : {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter",
                          "/proc/sys/net/ipv4/conf/default/rp_filter", "/proc/sys/net/ipv4/conf/to-client/rp_filter",
                          "/proc/sys/net/ipv4/conf/to-backend/rp_filter"}) {
    std::ofstream f(key);
    f << (std::string(key).find("ip_forward") != std::string::npos ? "1" : "0");
    f.close();
    ok = ok && !f.fail();
  }
  lab.LeaveNetns();
  if (!ok) return absl::InternalError("setting forwarding sysctls in " + r);
  t->backend_srv = std::make_unique<AcceptServer>();
  return t->backend_srv->Start(b, 8080, pin ? 1 : -1);
}

void DestroyTopology(Topology* t) {
  if (t->backend_srv) t->backend_srv->Stop();
  t->backend_srv.reset();
  for (std::string* ns : {&t->client, &t->router, &t->backend}) {
    if (!ns->empty()) Lab::Get().DelNetns(*ns);
    ns->clear();
  }
}

struct DpFigure {
  std::string label;
  std::string client, router;  // namespaces
  uint32_t addr = 0;
  uint16_t port = 0;
  std::vector<double> rates;
  uint64_t failed = 0;
  std::string error;
};

struct DpResults {
  std::vector<DpFigure> figures;
  double load_before = -1, load_after = -1;  // 1-minute load average
};

double LoadAverage() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  f >> l;
  return l;
}

// Every configuration gets its own client/router/backend namespaces, all
// alive at once, and the figures are measured in interleaved slices (slice k
// of every figure, then slice k+1, ...) so that drift in the machine's load
// hits all of them alike.
DpResults RunDataplane(const Options& o, const std::string& ipt_restore) {
  DpResults res;
  Lab& lab = Lab::Get();
  const int n = o.dp_services;
  Workload big;
  big.services = n;
  big.endpoints = o.endpoints;
  big.namespaces = o.namespaces;
  big.dataplane = true;
  Workload one = big;
  one.services = 1;
  const std::string sn = Thousands(n);

  // kBigNoCounters: the same services with serve --kernel-counters=false,
  // the baseline of the counters' data-plane cost.
  enum { kNone, kOne, kBig, kBigNoCounters, kIpt, kConfigs };
  Topology topo[kConfigs];
  Server servers[kConfigs];
  std::string config_error[kConfigs];
  const std::string rules_path = lab.tmpdir() + "/dp-iptables.rules";
  for (int c = 0; c < kConfigs; ++c) {
    const bool nftproxy = c == kOne || c == kBig || c == kBigNoCounters;
    if (nftproxy && !o.impls[kNftproxy]) continue;
    if (c == kIpt && !o.impls[kKubeIpt]) continue;
    const std::string tag = absl::StrCat("dp", c);
    absl::Status st = MakeTopology(tag, o.endpoints, o.pin, &topo[c]);
    if (st.ok() && nftproxy) {
      st = servers[c].Start(o, topo[c].router, tag,
                            c == kBigNoCounters ? std::vector<std::string>{"--kernel-counters=false"}
                                                : std::vector<std::string>{});
      if (st.ok()) {
        auto a = servers[c].Apply(FullRequest(c == kOne ? one : big), o.budget_s);
        if (!a.ok()) st = a.status();
      }
    }
    if (st.ok() && c == kIpt) {
      FILE* f = fopen(rules_path.c_str(), "w");
      if (!f) {
        st = absl::InternalError("cannot write " + rules_path);
      } else {
        WriteIptablesFull(big, f);
        fclose(f);
        RunOptions ro;
        ro.stdin_path = rules_path;
        ro.timeout_s = o.budget_s;
        ProcResult p = lab.Run(topo[c].router, {ipt_restore, "-w", "5"}, ro);
        if (!p.ok()) st = absl::InternalError("iptables-restore: " + p.Describe());
      }
      unlink(rules_path.c_str());
    }
    if (!st.ok()) config_error[c] = std::string(st.message());
  }
  auto add = [&](int c, const std::string& label, uint32_t addr, uint16_t port) {
    if (topo[c].client.empty() && config_error[c].empty()) return;  // not selected
    DpFigure f;
    f.label = label;
    f.client = topo[c].client;
    f.router = topo[c].router;
    f.addr = addr;
    f.port = port;
    f.error = config_error[c];
    res.figures.push_back(f);
  };
  add(kNone, "no proxy rules, client -> backend directly", kBackendAddr, 8080);
  add(kOne, "nftproxy, 1 service", one.Vip(0), one.port);
  add(kBig, "nftproxy, " + sn + " services, first service", big.Vip(0), big.port);
  add(kBig, "nftproxy, " + sn + " services, last service", big.Vip(n - 1), big.port);
  add(kBigNoCounters, "nftproxy, " + sn + " services, last service, no counters", big.Vip(n - 1), big.port);
  add(kIpt, "kube-proxy iptables, " + sn + " services, first service", big.Vip(0), big.port);
  add(kIpt, "kube-proxy iptables, " + sn + " services, last service", big.Vip(n - 1), big.port);
  for (DpFigure& f : res.figures) {
    if (f.error.empty() && !CanConnect(f.client, f.addr, f.port, 2000)) {
      f.error = absl::StrCat("no connection to ", Ip4(f.addr), ":", f.port);
    }
  }
  res.load_before = LoadAverage();
  const size_t nf = res.figures.size();
  for (int slice = 0; slice < o.dp_reps; ++slice) {
    for (size_t k = 0; k < nf; ++k) {
      // Rotate the order so that no figure always follows the same one.
      DpFigure& f = res.figures[(k + static_cast<size_t>(slice)) % nf];
      if (!f.error.empty()) continue;
      lab.Run(f.router, {"conntrack", "-F"});
      auto r = MeasureConnRate(f.client, f.addr, f.port, o.dp_seconds, o.pin ? 0 : -1);
      if (!r.ok()) {
        f.error = std::string(r.status().message());
        continue;
      }
      f.rates.push_back(r->rate());
      f.failed += r->failed;
    }
    std::string line = absl::StrCat("data plane: slice ", slice + 1, "/", o.dp_reps, ":");
    for (const DpFigure& f : res.figures) {
      if (!f.rates.empty()) absl::StrAppend(&line, " ", Thousands(static_cast<long long>(f.rates.back())));
    }
    Progress(line + " conn/s");
  }
  res.load_after = LoadAverage();
  for (int c = 0; c < kConfigs; ++c) {
    servers[c].Stop();
    DestroyTopology(&topo[c]);
  }
  return res;
}

// ---- report ----------------------------------------------------------------------

struct Row {
  int services;
  CpResult r[kNumImpls];
};

const char* const kImplNames[] = {"nftproxy (gRPC Sync)", "kube-proxy nftables (nft -f)", ""};

std::string Objects(const CpResult& r) {
  if (r.change_objects.empty()) return "-";
  return absl::StrFormat("%.0f", Median(r.change_objects));
}

void PrintControlPlane(const Options& o, const std::vector<Row>& rows, const std::string& ipt_name) {
  std::cout << "\n=== Control plane: N services x " << o.endpoints
            << " endpoints, TCP, IPv4 (one fresh namespace and server per cell) ===\n"
               "full sync: one Sync / one `nft -f` / one iptables-restore into an empty namespace, request to "
               "committed ruleset (nftproxy: median of --full-reps runs, each with a fresh namespace and server);\n"
               "kernel: CPU time the kernel spent for it (server stime; loader's sys time);\n"
               "no-op: nftproxy re-sends the identical Sync (median; the notes give the nf_tables commits it "
               "caused, and the same no-op as an Apply, whose reply carries every resource); kube-proxy's resync "
               "rewrites everything;\n"
               "change: one endpoint added or removed (alternately) on a random service, one Apply; objs: nf_tables objects "
               "(chains, rules, set elements...) one change adds or deletes, from untimed probes with an event "
               "listener;\n"
               "memory: nftproxy server RSS right after the full sync (peak) and installed (after the changes, 2 s idle); baselines: peak RSS of the nft / "
               "iptables-restore process;\n"
               "check: connections to the first, middle, last and last-changed VIP through the installed rules.\n\n";
  const std::vector<size_t> wd = {9, 31, 10, 10, 10, 11, 11, 6, 22, 6};
  const std::vector<std::string> head = {"services", "implementation", "full sync", "kernel", "no-op",
                                         "change p50", "change p99", "objs", "memory", "check"};
  std::string line;
  for (size_t i = 0; i < head.size(); ++i) line += Pad(head[i], wd[i], i >= 2 && i <= 7) + "  ";
  std::cout << RStrip(line) << "\n" << std::string(line.size(), '-') << "\n";
  std::vector<std::string> notes;
  for (const Row& row : rows) {
    bool first = true;
    const CpResult& base = row.r[kNftproxy];
    for (int k = 0; k < kNumImpls; ++k) {
      if (!o.impls[k]) continue;
      const CpResult& r = row.r[k];
      const std::string name = k == kKubeIpt ? "kube-proxy iptables (" + ipt_name + ")" : kImplNames[k];
      std::vector<std::string> c(head.size());
      c[0] = first ? Thousands(row.services) : "";
      first = false;
      c[1] = name;
      if (r.full_s < 0) {
        std::cout << Pad(c[0], wd[0], true) << "  " << Pad(c[1], wd[1]) << "  " << (r.note.empty() ? "-" : r.note)
                  << "\n";
        continue;
      }
      c[2] = Dur(r.full_s);
      // CPU time is accounted in scheduler ticks: small values are noise.
      c[3] = r.full_kernel_s < 0 ? "-" : r.full_kernel_s < 0.01 ? "<10 ms" : Dur(r.full_kernel_s);
      c[4] = r.noop.empty() ? (r.noop_note.empty() ? "-" : "skipped*") : Dur(Median(r.noop));
      c[5] = Dur(Percentile(r.changes, 50));
      c[6] = Dur(Percentile(r.changes, 99));
      c[7] = Objects(r);
      c[8] = k == kNftproxy ? absl::StrCat("RSS ", Mb(r.rss_kb), " (", Mb(r.peak_kb), ") ", Mb(r.settled_kb))
                            : absl::StrCat("peak ", Mb(r.peak_kb));
      c[9] = absl::StrCat(r.checks_ok, "/", r.checks);
      line.clear();
      for (size_t i = 0; i < c.size(); ++i) line += Pad(c[i], wd[i], i != 1 && i != 8 && i != 9) + "  ";
      std::cout << RStrip(line) << "\n";
      const std::string where = absl::StrCat(Thousands(row.services), " ", name, ": ");
      if (!r.note.empty()) notes.push_back(where + r.note);
      if (!r.noop_note.empty()) notes.push_back(where + "no-op: " + r.noop_note);
      if (!r.changes_note.empty()) notes.push_back(where + "changes: " + r.changes_note);
      if (!r.failed_checks.empty()) notes.push_back(where + "NO CONNECTION to " + r.failed_checks);
      if (static_cast<int>(r.changes.size()) != r.planned_changes && r.changes_note.empty()) {
        notes.push_back(absl::StrCat(where, "changes: ", r.changes.size(), " of ", r.planned_changes));
      }
      if (k == kNftproxy) {
        notes.push_back(absl::StrCat(where, "request ", Thousands(static_cast<long long>(r.request_bytes)),
                                     " bytes; server-side sync ", Dur(r.server_commit_s), "; nf_tables commits per no-op: ",
                                     r.noop_commits, "; the no-op as an Apply (reply with every resource): ",
                                     r.apply_noop.empty() ? "-" : Dur(Median(r.apply_noop)), "; ", r.changes.size(),
                                     " changes"));
        if (r.full_samples.size() > 1) {
          std::vector<std::string> each;
          for (double x : r.full_samples) each.push_back(Dur(x));
          notes.push_back(absl::StrCat(where, "full syncs (each into a fresh namespace and server; median shown): ",
                                       absl::StrJoin(each, ", ")));
        }
        if (!r.server_log.empty()) notes.push_back(absl::StrCat(where, "server log of the last full sync: ", r.server_log));
      } else if (r.request_bytes > 0) {
        notes.push_back(absl::StrCat(where, Thousands(static_cast<long long>(r.request_bytes)), " bytes of text; ",
                                     r.changes.size(), " changes"));
      }
      if (k != kNftproxy && base.full_s > 0) {
        line.clear();
        c = std::vector<std::string>(head.size());
        c[1] = "  x nftproxy";
        c[2] = Ratio(r.full_s, base.full_s);
        c[3] = base.full_kernel_s < 0.01 ? "" : Ratio(r.full_kernel_s, base.full_kernel_s);
        c[4] = r.noop.empty() ? "" : Ratio(Median(r.noop), Median(base.noop));
        c[5] = Ratio(Percentile(r.changes, 50), Percentile(base.changes, 50));
        c[6] = Ratio(Percentile(r.changes, 99), Percentile(base.changes, 99));
        for (size_t i = 0; i < 7; ++i) line += Pad(c[i], wd[i], i >= 2) + "  ";
        std::cout << RStrip(line) << "\n";
      }
    }
  }
  if (!notes.empty()) {
    std::cout << "\nnotes:\n";
    for (const std::string& n : notes) std::cout << "  " << n << "\n";
  }
}

void PrintDataplane(const Options& o, const DpResults& res) {
  std::cout << "\n=== Data plane: new TCP connections per second, client ns -> router ns (rules) -> backend ns ===\n"
            << "one connection at a time (connect, then close with RST); each figure is the median of " << o.dp_reps
            << " slices of " << o.dp_seconds
            << " s, the figures' slices interleaved; conntrack flushed before each slice;\n"
            << "each ruleset in its own client/router/backend namespaces; every endpoint is on the backend; "
            << (o.pin ? "client pinned to CPU 0, backend to CPU 1; " : "")
            << absl::StrFormat("load average %.2f before, %.2f after", res.load_before, res.load_after) << "\n\n";
  double none = -1, one = -1;
  for (const DpFigure& f : res.figures) {
    if (f.label.rfind("no proxy", 0) == 0) none = Median(f.rates);
    if (f.label == "nftproxy, 1 service") one = Median(f.rates);
  }
  const std::vector<size_t> wd = {52, 10, 18, 9, 12};
  std::cout << Pad("ruleset in the router", wd[0]) << "  " << Pad("conn/s", wd[1], true) << "  "
            << Pad("(min - max)", wd[2], true) << "  " << Pad("x none", wd[3], true) << "  "
            << Pad("x nftproxy 1", wd[4], true) << "\n"
            << std::string(wd[0] + wd[1] + wd[2] + wd[3] + wd[4] + 8, '-') << "\n";
  for (const DpFigure& f : res.figures) {
    if (f.rates.empty() && f.error.empty()) continue;
    std::cout << Pad(f.label, wd[0]) << "  ";
    if (f.rates.empty()) {
      std::cout << "error: " << f.error << "\n";
      continue;
    }
    const double m = Median(f.rates);
    const auto [lo, hi] = std::minmax_element(f.rates.begin(), f.rates.end());
    std::string row = absl::StrCat(
        Pad(Thousands(static_cast<long long>(m)), wd[1], true), "  ",
        Pad(absl::StrCat(Thousands(static_cast<long long>(*lo)), " - ", Thousands(static_cast<long long>(*hi))), wd[2],
            true),
        "  ", Pad(Ratio(m, none), wd[3], true), "  ",
        Pad(f.label.rfind("no proxy", 0) == 0 ? "" : Ratio(m, one), wd[4], true));
    if (f.failed) absl::StrAppend(&row, "  (", f.failed, " failed connects)");
    if (!f.error.empty()) absl::StrAppend(&row, "  (", f.error, ")");
    std::cout << RStrip(row) << "\n";
  }
}

void PrintGoals(const Options& o, const std::vector<Row>& rows, const DpResults* dp) {
  std::cout << "\n=== Goals of issue 4, as measured in this run ===\n";
  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  for (const Row& row : rows) {
    const CpResult& r = row.r[kNftproxy];
    if (!o.impls[kNftproxy] || (row.services != 10000 && row.services != 100000)) continue;
    if (r.full_s < 0) {
      std::cout << "  " << Thousands(row.services) << " x " << o.endpoints << ": " << (r.note.empty() ? "not measured" : r.note)
                << "  NOT met\n";
      continue;
    }
    if (row.services == 10000) {
      std::cout << "  full sync 10,000 x " << o.endpoints << " <= 0.5 s: " << Dur(r.full_s) << "  "
                << verdict(r.full_s <= 0.5) << "\n";
      if (!r.noop.empty()) {
        std::cout << "  no-op re-apply < 50 ms and no kernel work: " << Dur(Median(r.noop)) << ", " << r.noop_commits
                  << " commits  " << verdict(Median(r.noop) < 0.05 && r.noop_commits == 0) << "\n";
      }
      if (!r.changes.empty()) {
        const double p50 = Percentile(r.changes, 50), p99 = Percentile(r.changes, 99);
        std::cout << "  single change p50 <= 2 ms, p99 <= 5 ms: " << Dur(p50) << " / " << Dur(p99) << "  "
                  << verdict(p50 <= 0.002 && p99 <= 0.005) << "\n";
      }
      std::cout << "  server RSS <= 150 MB at 10,000 x " << o.endpoints << ": " << Mb(r.settled_kb)
                << " installed (" << Mb(r.rss_kb) << " right after the full sync, peak " << Mb(r.peak_kb) << ")  "
                << verdict(r.settled_kb > 0 && r.settled_kb <= 150 * 1024) << "\n";
    }
    if (row.services == 100000) {
      std::cout << "  full sync 100,000 x " << o.endpoints << " <= 10 s: " << Dur(r.full_s) << "  "
                << verdict(r.full_s <= 10) << "; RSS " << Mb(r.settled_kb) << " installed, peak " << Mb(r.peak_kb) << "; " << r.changes.size()
                << " changes, p50 " << Dur(Percentile(r.changes, 50)) << "; connections checked " << r.checks_ok << "/"
                << r.checks << "\n";
    }
  }
  if (dp) {
    double one = -1, first = -1, last = -1, ifirst = -1, ilast = -1;
    for (const DpFigure& f : dp->figures) {
      const double m = Median(f.rates);
      if (f.label == "nftproxy, 1 service") one = m;
      if (f.label.rfind("nftproxy,", 0) == 0 && f.label.find("first") != std::string::npos) first = m;
      if (f.label.rfind("nftproxy,", 0) == 0 && f.label.find("last") != std::string::npos) last = m;
      if (f.label.rfind("kube-proxy iptables", 0) == 0 && f.label.find("first") != std::string::npos) ifirst = m;
      if (f.label.rfind("kube-proxy iptables", 0) == 0 && f.label.find("last") != std::string::npos) ilast = m;
    }
    if (one > 0 && first > 0 && last > 0) {
      const double worst = std::min(first, last) / one;
      std::cout << "  data plane: first/last of " << Thousands(o.dp_services) << " within 5% of 1 service: "
                << Ratio(first, one) << " / " << Ratio(last, one) << "  " << verdict(worst >= 0.95) << "\n";
    }
    if (ifirst > 0 && ilast > 0) {
      std::cout << "  iptables shape, last vs first service: " << Ratio(ilast, ifirst) << "\n";
    }
  }
}

// First line of a command's output, whatever its exit status.
std::string CommandOutput(const std::vector<std::string>& argv) {
  ProcResult p = Lab::Get().Run("", argv, RunOptions{"", 20});
  return p.started && !p.timed_out ? FirstLine(p.output) : "";
}

void PrintHeader(const Options& o, const std::string& ipt) {
  char date[64];
  time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
  utsname u{};
  uname(&u);
  std::string cpu;
  {
    std::ifstream f("/proc/cpuinfo");
    std::string l;
    while (std::getline(f, l)) {
      if (l.rfind("model name", 0) == 0) {
        cpu = l.substr(l.find(':') + 2);
        break;
      }
    }
  }
  std::cout << "nftproxy_bench  " << date << "\n"
            << "machine: " << u.machine << ", Linux " << u.release << ", " << std::thread::hardware_concurrency()
            << " CPUs" << (cpu.empty() ? "" : " (" + cpu + ")") << ", "
            << sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGE_SIZE) / 1024) / 1024 / 1024 << " GiB RAM\n";
  std::cout << "nftproxy: " << o.nftproxy << " (" << CommandOutput({o.nftproxy, "--server", "unix://" + Lab::Get().tmpdir() + "/none.sock", "version"}) << ")";
  const std::string src = NFTPROXY_BENCH_SOURCE_DIR;
  if (!src.empty() && !Which("git").empty()) {
    const std::string head = CommandOutput({"git", "-C", src, "rev-parse", "--short", "HEAD"});
    ProcResult dirty = Lab::Get().Run("", {"git", "-C", src, "status", "--porcelain", "--untracked-files=no"});
    if (!head.empty()) {
      std::cout << "; source tree " << src << " at " << head;
      std::vector<std::string> files;
      for (absl::string_view l : absl::StrSplit(dirty.output, '\n', absl::SkipEmpty())) {
        if (l.size() > 3) files.emplace_back(l.substr(3));
      }
      if (dirty.ok() && !files.empty()) std::cout << ", uncommitted changes in: " << absl::StrJoin(files, " ");
    }
  }
  std::cout << "\n";
  std::cout << "tools: " << CommandOutput({"nft", "--version"}) << "; " << ipt << " ("
            << CommandOutput({ipt, "--version"}) << ")\n";
  std::cout << "run: scales " << absl::StrJoin(o.scales, ",") << ", " << o.endpoints << " endpoints per service, "
            << o.namespaces << " namespace(s), budget " << o.budget_s << " s per implementation and scale"
            << (o.quick ? ", --quick" : "") << "\n";
  std::cout.flush();
}

int Main(int argc, char** argv) {
  Options o;
  if (auto s = ParseOptions(argc, argv, &o); !s.ok()) {
    std::cerr << "nftproxy_bench: " << s.message() << "\n\n" << kUsage;
    return 2;
  }
  if (geteuid() != 0) {
    std::cerr << "nftproxy_bench: needs root (network namespaces, nftables, iptables)\n";
    return 2;
  }
  if (o.nftproxy.empty()) {
    // The nftproxy of the same build: <build>/tests/bench/nftproxy_bench -> <build>/nftproxy.
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
      self[n] = 0;
      std::string dir = self;
      dir = dir.substr(0, dir.rfind('/'));
      const std::string cand = dir + "/../../nftproxy";
      if (access(cand.c_str(), X_OK) == 0) o.nftproxy = cand;
    }
    if (o.nftproxy.empty()) o.nftproxy = NFTPROXY_BENCH_DEFAULT_BIN;
  }
  if (char* real = realpath(o.nftproxy.c_str(), nullptr)) {
    o.nftproxy = real;
    free(real);
  }
  if ((o.impls[kNftproxy]) && access(o.nftproxy.c_str(), X_OK) != 0) {
    std::cerr << "nftproxy_bench: no nftproxy binary at \"" << o.nftproxy << "\" (use --nftproxy PATH)\n";
    return 2;
  }
  for (const char* tool : {"ip", "nft", "conntrack"}) {
    if (Which(tool).empty()) {
      std::cerr << "nftproxy_bench: `" << tool << "` not found (scripts/install-deps.sh installs it)\n";
      return 2;
    }
  }
  std::string ipt = Which("iptables-legacy-restore");
  std::string ipt_name = "legacy";
  if (ipt.empty()) {
    ipt = Which("iptables-restore");
    ipt_name = "iptables-restore";
  }
  if (ipt.empty() && o.impls[kKubeIpt]) {
    std::cerr << "nftproxy_bench: no iptables-restore found\n";
    return 2;
  }
  if (auto s = Lab::Init(); !s.ok()) {
    std::cerr << "nftproxy_bench: " << s.message() << "\n";
    return 1;
  }
  PrintHeader(o, ipt);

  std::vector<Row> rows;
  if (o.control_plane) {
    std::vector<History> hist[kNumImpls];
    std::vector<int> scales = o.scales;
    std::sort(scales.begin(), scales.end());
    for (int n : scales) {
      Row row;
      row.services = n;
      Workload w;
      w.services = n;
      w.endpoints = o.endpoints;
      w.namespaces = o.namespaces;
      for (int k = 0; k < kNumImpls; ++k) {
        if (!o.impls[k]) continue;
        Progress(absl::StrCat(kImplKeys[k], " ", Thousands(n), " services: starting"));
        CpResult r = k == kNftproxy ? RunNftproxyCp(o, w) : RunKubeCp(o, w, static_cast<Impl>(k), ipt, hist[k]);
        std::string summary = absl::StrCat(kImplKeys[k], " ", Thousands(n), ": full ", Dur(r.full_s), ", no-op ",
                                           Dur(Median(r.noop)), ", change p50 ", Dur(Percentile(r.changes, 50)),
                                           " p99 ", Dur(Percentile(r.changes, 99)));
        if (!r.note.empty()) summary += " [" + r.note + "]";
        Progress(summary);
        if (r.full_s > 0) {
          hist[k].push_back(History{n, r.full_s, r.noop.empty() ? -1 : Median(r.noop),
                                    r.changes.empty() ? -1 : Median(r.changes), static_cast<double>(r.peak_kb)});
        }
        row.r[k] = std::move(r);
      }
      rows.push_back(std::move(row));
    }
  }
  std::unique_ptr<DpResults> dp;
  if (o.dataplane) {
    Progress(absl::StrCat("data plane: ", Thousands(o.dp_services), " services, ", o.dp_reps, " slices of ",
                          o.dp_seconds, " s per figure"));
    dp = std::make_unique<DpResults>(RunDataplane(o, ipt));
  }
  if (o.control_plane) PrintControlPlane(o, rows, ipt_name);
  if (dp) PrintDataplane(o, *dp);
  PrintGoals(o, rows, dp.get());
  std::cout.flush();
  Lab::Get().Cleanup();
  return 0;
}

}  // namespace
}  // namespace npxbench

int main(int argc, char** argv) { return npxbench::Main(argc, argv); }
