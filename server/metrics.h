// Metrics of the server, served at /metrics (serve --metrics-address) in the
// Prometheus text format (server/metrics_text.h), and the answers of the
// health endpoints (/healthz, /livez, /readyz).
//
// A Registry holds families of counters, gauges and histograms with fixed
// buckets. Each family has its own small mutex, held only to add to a value
// or to copy the family out while /metrics renders; the engine updates them
// after its work, and nothing here ever takes the engine's lock. Rendering
// sorts families by name and series by label values: the output is stable.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/http_server.h"
#include "server/metrics_text.h"

namespace nftproxy::server {

class MetricFamily {
 public:
  MetricFamily(std::string name, std::string help, prom::Type type, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(label_names)) {}
  virtual ~MetricFamily() = default;
  const std::string& name() const { return name_; }
  virtual void Write(prom::TextWriter* w) const = 0;

 protected:
  prom::Labels LabelsOf(const std::vector<std::string>& values) const;
  void WriteHeader(prom::TextWriter* w) const { w->Family(name_, help_, type_); }

  const std::string name_, help_;
  const prom::Type type_;
  const std::vector<std::string> label_names_;
};

// A counter or a gauge per label values (as many values as label names).
class ValueFamily final : public MetricFamily {
 public:
  using MetricFamily::MetricFamily;
  void Add(const std::vector<std::string>& values, double delta = 1);
  // Gauges only.
  void Set(const std::vector<std::string>& values, double v);
  double Value(const std::vector<std::string>& values) const;
  void Write(prom::TextWriter* w) const override;

 private:
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, double> series_ ABSL_GUARDED_BY(mu_);
};

class HistogramFamily final : public MetricFamily {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds)
      : MetricFamily(std::move(name), std::move(help), prom::Type::kHistogram, std::move(label_names)),
        bounds_(std::move(bounds)) {}
  void Observe(const std::vector<std::string>& values, double v);
  uint64_t Count(const std::vector<std::string>& values) const;
  void Write(prom::TextWriter* w) const override;

 private:
  struct Series {
    std::vector<uint64_t> counts;  // per bucket, not cumulative; last: above every bound
    double sum = 0;
  };
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, Series> series_ ABSL_GUARDED_BY(mu_);
};

// Series read when /metrics is rendered (values kept elsewhere: the Watch
// hub, the kernel). `read` runs on the rendering thread, without any
// lock of the registry; an error is logged and gives no series.
class SampledFamily final : public MetricFamily {
 public:
  using Samples = std::vector<std::pair<std::vector<std::string>, double>>;
  SampledFamily(std::string name, std::string help, prom::Type type, std::vector<std::string> label_names,
                std::function<absl::StatusOr<Samples>()> read)
      : MetricFamily(std::move(name), std::move(help), type, std::move(label_names)), read_(std::move(read)) {}
  void Write(prom::TextWriter* w) const override;

 private:
  std::function<absl::StatusOr<Samples>()> read_;
};

class Registry {
 public:
  // The families live as long as the registry. A name used twice, or an
  // invalid metric or label name, is a programming error (aborts).
  ValueFamily* Counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  ValueFamily* Gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  HistogramFamily* Histogram(const std::string& name, const std::string& help, std::vector<std::string> labels,
                             std::vector<double> bounds);
  // A gauge of one series, or a counter or gauge family, read at rendering.
  void GaugeFunction(const std::string& name, const std::string& help, std::function<double()> read);
  void Sampled(const std::string& name, const std::string& help, prom::Type type, std::vector<std::string> labels,
               std::function<absl::StatusOr<SampledFamily::Samples>()> read);
  // Every family, sorted by name, in the text format.
  std::string Render() const;

 private:
  template <typename F>
  F* Add(std::unique_ptr<F> f);
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
};

// Bucket bounds: durations in seconds (100us to 60s), and objects per
// kernel commit (1 to 4M, by 4).
const std::vector<double>& DurationBuckets();
const std::vector<double>& MessageBuckets();

// What the write engine reports. Every metric name starts with nftproxy_.
struct EngineMetrics {
  explicit EngineMetrics(Registry* r);

  HistogramFamily* write_duration;       // {method}
  HistogramFamily* phase_duration;       // {phase}
  HistogramFamily* programming_latency;  // arrival to kernel commit
  ValueFamily* writes;                   // {method, code}
  ValueFamily* resources;                // {kind}
  ValueFamily* endpoints;                // {condition}
  ValueFamily* commits;                  // {kind}: adopt, full, delta
  HistogramFamily* commit_messages;
  ValueFamily* commit_failures;
  ValueFamily* drift_detected;
  ValueFamily* drift_repairs;
  ValueFamily* flows_deleted;
  ValueFamily* last_commit;
};

// What the health endpoints look at, read without the engine's lock.
struct HealthState {
  // The oldest change waiting to reach the kernel (a write waiting or being
  // processed, a drift repair queued); InfiniteFuture when none.
  absl::Time oldest_pending = absl::InfiniteFuture();
  // The last time the engine finished a write or a repair (or started).
  absl::Time last_updated = absl::InfinitePast();
  // The first commit of this run is in the kernel.
  bool ready = false;
};

// kube-proxy's healthz: no pending change older than `health_timeout`.
inline bool Healthy(const HealthState& health, absl::Duration health_timeout, absl::Time now) {
  return health.oldest_pending == absl::InfiniteFuture() || now - health.oldest_pending < health_timeout;
}

// The answer to a GET or HEAD of /metrics, /healthz, /livez or /readyz (404
// for any other path). kube-proxy's semantics: /healthz and /livez are 503
// while a pending change is older than `health_timeout`, with a JSON body
// {"lastUpdated": "...", "currentTime": "..."} (RFC 3339 times); /readyz is
// 200 once the first commit is in the kernel.
HttpResponse ServeObservability(const HttpRequest& req, const Registry& registry, const HealthState& health,
                                absl::Duration health_timeout, absl::Time now);

}  // namespace nftproxy::server
