#include "server/metrics.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace nftproxy::server {

prom::Labels MetricFamily::LabelsOf(const std::vector<std::string>& values) const {
  prom::Labels labels;
  labels.reserve(label_names_.size());
  for (size_t i = 0; i < label_names_.size(); ++i) {
    labels.emplace_back(label_names_[i], i < values.size() ? values[i] : std::string());
  }
  return labels;
}

void ValueFamily::Add(const std::vector<std::string>& values, double delta) {
  absl::MutexLock lock(&mu_);
  series_[values] += delta;
}

void ValueFamily::Set(const std::vector<std::string>& values, double v) {
  absl::MutexLock lock(&mu_);
  series_[values] = v;
}

double ValueFamily::Value(const std::vector<std::string>& values) const {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(values);
  return it == series_.end() ? 0 : it->second;
}

void ValueFamily::Write(prom::TextWriter* w) const {
  std::map<std::vector<std::string>, double> copy;
  {
    absl::MutexLock lock(&mu_);
    copy = series_;
  }
  // A family without labels always has its one series, from 0.
  if (label_names_.empty() && copy.empty()) copy[{}] = 0;
  WriteHeader(w);
  for (const auto& [values, v] : copy) w->Sample(name_, LabelsOf(values), v);
}

void HistogramFamily::Observe(const std::vector<std::string>& values, double v) {
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  absl::MutexLock lock(&mu_);
  Series& s = series_[values];
  if (s.counts.empty()) s.counts.resize(bounds_.size() + 1);
  ++s.counts[bucket];
  s.sum += v;
}

uint64_t HistogramFamily::Count(const std::vector<std::string>& values) const {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(values);
  if (it == series_.end()) return 0;
  uint64_t n = 0;
  for (uint64_t c : it->second.counts) n += c;
  return n;
}

void HistogramFamily::Write(prom::TextWriter* w) const {
  std::map<std::vector<std::string>, Series> copy;
  {
    absl::MutexLock lock(&mu_);
    copy = series_;
  }
  if (label_names_.empty() && copy.empty()) copy[{}].counts.resize(bounds_.size() + 1);
  WriteHeader(w);
  for (const auto& [values, s] : copy) w->Histogram(name_, LabelsOf(values), bounds_, s.counts, s.sum);
}

void SampledFamily::Write(prom::TextWriter* w) const {
  absl::StatusOr<Samples> samples = read_();
  if (!samples.ok()) {
    log::Warning("cannot read a metric", {{"metric", name_}, {"error", std::string(samples.status().message())}});
  }
  WriteHeader(w);
  if (!samples.ok()) return;
  for (const auto& [values, v] : *samples) w->Sample(name_, LabelsOf(values), v);
}

template <typename F>
F* Registry::Add(std::unique_ptr<F> f) {
  F* raw = f.get();
  absl::MutexLock lock(&mu_);
  if (!prom::ValidMetricName(f->name()) || families_.count(f->name()) != 0) {
    log::Error("invalid or duplicate metric name", {{"name", f->name()}});
    std::abort();
  }
  families_[f->name()] = std::move(f);
  return raw;
}

namespace {
void CheckLabels(const std::string& metric, const std::vector<std::string>& labels) {
  for (const std::string& l : labels) {
    if (!prom::ValidLabelName(l)) {
      log::Error("invalid label name", {{"metric", metric}, {"label", l}});
      std::abort();
    }
  }
}
}  // namespace

ValueFamily* Registry::Counter(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  CheckLabels(name, labels);
  return Add(std::make_unique<ValueFamily>(name, help, prom::Type::kCounter, std::move(labels)));
}

ValueFamily* Registry::Gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  CheckLabels(name, labels);
  return Add(std::make_unique<ValueFamily>(name, help, prom::Type::kGauge, std::move(labels)));
}

HistogramFamily* Registry::Histogram(const std::string& name, const std::string& help,
                                     std::vector<std::string> labels, std::vector<double> bounds) {
  CheckLabels(name, labels);
  if (!std::is_sorted(bounds.begin(), bounds.end()) ||
      std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end()) {
    log::Error("histogram bounds must ascend", {{"metric", name}});
    std::abort();
  }
  return Add(std::make_unique<HistogramFamily>(name, help, std::move(labels), std::move(bounds)));
}

void Registry::GaugeFunction(const std::string& name, const std::string& help, std::function<double()> read) {
  Sampled(name, help, prom::Type::kGauge, {},
          [read = std::move(read)]() -> absl::StatusOr<SampledFamily::Samples> {
            return SampledFamily::Samples{{{}, read()}};
          });
}

void Registry::Sampled(const std::string& name, const std::string& help, prom::Type type,
                       std::vector<std::string> labels, std::function<absl::StatusOr<SampledFamily::Samples>()> read) {
  CheckLabels(name, labels);
  Add(std::make_unique<SampledFamily>(name, help, type, std::move(labels), std::move(read)));
}

std::string Registry::Render() const {
  prom::TextWriter w;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, f] : families_) f->Write(&w);
  return w.Take();
}

const std::vector<double>& DurationBuckets() {
  static const std::vector<double> b = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  return b;
}

const std::vector<double>& MessageBuckets() {
  static const std::vector<double> b = {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};
  return b;
}

EngineMetrics::EngineMetrics(Registry* r)
    : write_duration(r->Histogram("nftproxy_write_duration_seconds",
                                  "Time of a whole write (Apply, Sync, Delete), from its arrival at the engine to "
                                  "its reply, whatever its outcome.",
                                  {"method"}, DurationBuckets())),
      phase_duration(r->Histogram("nftproxy_write_phase_duration_seconds",
                                  "Time a write spent in each phase: examine, stage, validate, model, compile, "
                                  "batch, kernel, dataplane_other, record (a phase a write did not reach is not "
                                  "observed).",
                                  {"phase"}, DurationBuckets())),
      programming_latency(r->Histogram("nftproxy_network_programming_duration_seconds",
                                       "Time from a write's arrival at the engine to the kernel's commit of its "
                                       "change (writes that changed the kernel only).",
                                       {}, DurationBuckets())),
      writes(r->Counter("nftproxy_writes_total", "Writes, by method and outcome code (OK or the gRPC code).",
                        {"method", "code"})),
      resources(r->Gauge("nftproxy_resources", "Resources in the desired state, by kind.", {"kind"})),
      endpoints(r->Gauge("nftproxy_endpoints",
                         "Endpoints of EndpointSlices in the desired state whose condition is true, by condition "
                         "(ready, serving, terminating).",
                         {"condition"})),
      commits(r->Counter("nftproxy_kernel_commits_total",
                         "nf_tables batches the kernel committed, by kind: adopt (the table a previous run left, or "
                         "one someone changed, read back and only its differences written: the first commit of "
                         "a run, a drift repair), full (the whole table replaced), delta (a write's difference).",
                         {"kind"})),
      commit_messages(r->Histogram("nftproxy_kernel_commit_messages",
                                   "Netlink messages (objects) per committed batch.", {}, MessageBuckets())),
      commit_failures(r->Counter("nftproxy_kernel_commit_failures_total",
                                 "Batches the kernel refused or whose outcome is unknown.")),
      drift_detected(r->Counter("nftproxy_drift_detected_total",
                                "Changes to the table made outside nftproxy (or that may have been).")),
      drift_repairs(r->Counter("nftproxy_drift_repairs_total",
                               "Times the table was installed again whole after a change outside nftproxy.")),
      flows_deleted(r->Counter("nftproxy_conntrack_entries_deleted_total",
                               "UDP conntrack entries deleted because their endpoint was removed.")),
      last_commit(r->Gauge("nftproxy_last_successful_commit_timestamp_seconds",
                           "Unix time of the last batch the kernel committed (0: none in this run).")) {
  for (const char* kind : {"service", "endpointslice", "workload"}) resources->Set({kind}, 0);
  for (const char* condition : {"ready", "serving", "terminating"}) endpoints->Set({condition}, 0);
  for (const char* kind : {"adopt", "full", "delta"}) commits->Add({kind}, 0);
  r->Gauge("nftproxy_build_info", "Always 1; the version of nftproxy as a label.", {"version"})
      ->Set({NFTPROXY_VERSION}, 1);
}

namespace {
std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}
}  // namespace

HttpResponse ServeObservability(const HttpRequest& req, const Registry& registry, const HealthState& health,
                                absl::Duration health_timeout, absl::Time now) {
  HttpResponse r;
  if (req.path == "/metrics") {
    r.content_type = prom::kContentType;
    r.body = registry.Render();
    return r;
  }
  if (req.path == "/healthz" || req.path == "/livez") {
    // kube-proxy: unhealthy while a change has waited longer than the timeout.
    const bool healthy = Healthy(health, health_timeout, now);
    r.status = healthy ? 200 : 503;
    r.content_type = "application/json";
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.body = absl::StrCat("{\"lastUpdated\": \"", Rfc3339(health.last_updated), "\",\"currentTime\": \"",
                          Rfc3339(now), "\"}\n");
    return r;
  }
  if (req.path == "/readyz") {
    r.status = health.ready ? 200 : 503;
    r.body = health.ready ? "ok\n" : "the first commit of this run is not in the kernel yet\n";
    return r;
  }
  r.status = 404;
  r.body = "not found; try /metrics, /healthz, /livez or /readyz\n";
  return r;
}

}  // namespace nftproxy::server
