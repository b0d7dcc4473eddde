#include "server/metrics.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace nftproxy::server {
namespace {

TEST(Registry, RendersFamiliesSortedByNameAndSeriesByLabels) {
  Registry r;
  ValueFamily* writes = r.Counter("z_writes_total", "Writes.", {"method", "code"});
  ValueFamily* gauge = r.Gauge("a_things", "Things.", {"kind"});
  ValueFamily* plain = r.Counter("m_plain_total", "No labels.");
  writes->Add({"Sync", "OK"});
  writes->Add({"Apply", "OK"}, 2);
  writes->Add({"Apply", "INVALID_ARGUMENT"});
  gauge->Set({"b"}, 2);
  gauge->Set({"a"}, 5);
  gauge->Add({"a"}, -1);
  EXPECT_EQ(r.Render(),
            "# HELP a_things Things.\n"
            "# TYPE a_things gauge\n"
            "a_things{kind=\"a\"} 4\n"
            "a_things{kind=\"b\"} 2\n"
            "# HELP m_plain_total No labels.\n"
            "# TYPE m_plain_total counter\n"
            "m_plain_total 0\n"
            "# HELP z_writes_total Writes.\n"
            "# TYPE z_writes_total counter\n"
            "z_writes_total{method=\"Apply\",code=\"INVALID_ARGUMENT\"} 1\n"
            "z_writes_total{method=\"Apply\",code=\"OK\"} 2\n"
            "z_writes_total{method=\"Sync\",code=\"OK\"} 1\n");
  EXPECT_EQ(r.Render(), r.Render());  // stable
  plain->Add({}, 3);
  EXPECT_EQ(plain->Value({}), 3);
}

TEST(Registry, FunctionsAreReadAtEveryRendering) {
  Registry r;
  double open = 3;
  r.GaugeFunction("b_open", "Open now.", [&open] { return open; });
  r.Sampled("a_ended_total", "Ended.", prom::Type::kCounter, {"reason"},
            [&open]() -> absl::StatusOr<SampledFamily::Samples> {
              return SampledFamily::Samples{{{"slow"}, open * 2}, {{"compacted"}, 1}};
            });
  EXPECT_EQ(r.Render(),
            "# HELP a_ended_total Ended.\n"
            "# TYPE a_ended_total counter\n"
            "a_ended_total{reason=\"slow\"} 6\n"
            "a_ended_total{reason=\"compacted\"} 1\n"
            "# HELP b_open Open now.\n"
            "# TYPE b_open gauge\n"
            "b_open 3\n");
  open = 0;
  EXPECT_TRUE(absl::StrContains(r.Render(), "\nb_open 0\n"));
}

TEST(Registry, HistogramBucketsByUpperBoundInclusive) {
  Registry r;
  HistogramFamily* h = r.Histogram("d_seconds", "D.", {"phase"}, {0.5, 1});
  h->Observe({"x"}, 0.5);  // le="0.5" includes it
  h->Observe({"x"}, 0.7);
  h->Observe({"x"}, 9);
  EXPECT_EQ(h->Count({"x"}), 3u);
  EXPECT_EQ(h->Count({"y"}), 0u);
  EXPECT_EQ(r.Render(),
            "# HELP d_seconds D.\n# TYPE d_seconds histogram\n"
            "d_seconds_bucket{phase=\"x\",le=\"0.5\"} 1\n"
            "d_seconds_bucket{phase=\"x\",le=\"1\"} 2\n"
            "d_seconds_bucket{phase=\"x\",le=\"+Inf\"} 3\n"
            "d_seconds_sum{phase=\"x\"} 10.2\n"
            "d_seconds_count{phase=\"x\"} 3\n");
}

TEST(Registry, EngineMetricsHaveTheirNamesAndInitialSeries) {
  Registry r;
  EngineMetrics m(&r);
  const std::string text = r.Render();
  for (const char* want :
       {"# TYPE nftproxy_write_duration_seconds histogram", "# TYPE nftproxy_write_phase_duration_seconds histogram",
        "nftproxy_network_programming_duration_seconds_count 0", "# TYPE nftproxy_writes_total counter",
        "nftproxy_resources{kind=\"service\"} 0", "nftproxy_endpoints{condition=\"terminating\"} 0",
        "nftproxy_kernel_commits_total{kind=\"adopt\"} 0", "nftproxy_kernel_commit_messages_bucket{le=\"+Inf\"} 0",
        "nftproxy_drift_repairs_total 0", "nftproxy_conntrack_entries_deleted_total 0",
        "nftproxy_last_successful_commit_timestamp_seconds 0", "nftproxy_build_info{version=\""}) {
    EXPECT_TRUE(absl::StrContains(text, want)) << want << "\n" << text;
  }
}

HttpRequest Get(const std::string& path) {
  HttpRequest req;
  req.method = "GET";
  req.target = req.path = path;
  return req;
}

TEST(Observability, HealthzFollowsThePendingChangesAge) {
  Registry r;
  const absl::Time now = absl::FromUnixSeconds(1764600000);
  HealthState h;
  h.last_updated = now - absl::Seconds(5);
  HttpResponse ok = ServeObservability(Get("/healthz"), r, h, absl::Seconds(60), now);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.content_type, "application/json");
  EXPECT_EQ(ok.body, "{\"lastUpdated\": \"2025-12-01T14:39:55Z\",\"currentTime\": \"2025-12-01T14:40:00Z\"}\n");
  h.oldest_pending = now - absl::Seconds(59);
  EXPECT_EQ(ServeObservability(Get("/livez"), r, h, absl::Seconds(60), now).status, 200);
  h.oldest_pending = now - absl::Seconds(61);
  EXPECT_EQ(ServeObservability(Get("/healthz"), r, h, absl::Seconds(60), now).status, 503);
  EXPECT_EQ(ServeObservability(Get("/livez"), r, h, absl::Seconds(60), now).status, 503);
}

TEST(Observability, ReadyzMetricsAndUnknownPaths) {
  Registry r;
  r.Counter("x_total", "X.");
  HealthState h;
  EXPECT_EQ(ServeObservability(Get("/readyz"), r, h, absl::Seconds(60), absl::Now()).status, 503);
  h.ready = true;
  EXPECT_EQ(ServeObservability(Get("/readyz"), r, h, absl::Seconds(60), absl::Now()).status, 200);
  HttpResponse m = ServeObservability(Get("/metrics?x=1"), r, h, absl::Seconds(60), absl::Now());
  EXPECT_EQ(m.status, 404);  // the path is the caller's to cut (HttpRequest.path)
  HttpRequest req = Get("/metrics");
  req.target = "/metrics?x=1";
  m = ServeObservability(req, r, h, absl::Seconds(60), absl::Now());
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(m.body, "# HELP x_total X.\n# TYPE x_total counter\nx_total 0\n");
  EXPECT_EQ(ServeObservability(Get("/"), r, h, absl::Seconds(60), absl::Now()).status, 404);
}

}  // namespace
}  // namespace nftproxy::server
