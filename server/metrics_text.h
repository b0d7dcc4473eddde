// The Prometheus text exposition format, version 0.0.4: what /metrics
// serves. Only the writer; the metrics themselves are in server/metrics.h.
//
//   # HELP nftproxy_writes_total Writes, by method and outcome code.
//   # TYPE nftproxy_writes_total counter
//   nftproxy_writes_total{code="OK",method="Apply"} 3
//
// Families and series are written in the order the caller gives them;
// server/metrics.h sorts both, so the output is stable.
//
// Why not prometheus-cpp (Debian 12 has 1.0.1): serving it needs its pull
// module, which brings civetweb (a second embedded web server with its own
// thread pool and request parser) and the dev package depends on libcurl for
// its push module; the format itself is these hundred-odd lines, tested
// against the format's rules (tests/unit/server/metrics_text_test.cc) and by
// `promtool check metrics` (tests/integration/test_metrics.py).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace nftproxy::server::prom {

inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

enum class Type { kCounter, kGauge, kHistogram };
const char* TypeName(Type t);  // "counter", "gauge", "histogram"

// Label names with their values, in the order written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool ValidMetricName(absl::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved), not "le".
bool ValidLabelName(absl::string_view name);

// A label value between double quotes: \ " and newline escaped.
std::string EscapeLabelValue(absl::string_view v);
// A HELP text: \ and newline escaped.
std::string EscapeHelp(absl::string_view v);
// A sample value: "+Inf", "-Inf", "NaN", integers without an exponent up to
// 2^53, anything else in the shortest form that reads back exactly.
std::string FormatValue(double v);

class TextWriter {
 public:
  // Starts a family: its # HELP and # TYPE lines.
  void Family(absl::string_view name, absl::string_view help, Type type);
  // One sample line; `name` is the family's or, for a histogram, the
  // family's with _bucket, _sum or _count.
  void Sample(absl::string_view name, const Labels& labels, double value);
  // A histogram's series: for each upper bound (ascending) a _bucket with
  // le= the bound and the cumulative count, the +Inf bucket, _sum and _count.
  // counts[i] are the observations in bucket i alone (not cumulative); there
  // is one more count than bounds: the last is above the last bound.
  void Histogram(absl::string_view name, const Labels& labels, const std::vector<double>& bounds,
                 const std::vector<uint64_t>& counts, double sum);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace nftproxy::server::prom
