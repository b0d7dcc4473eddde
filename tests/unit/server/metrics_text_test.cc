#include "server/metrics_text.h"

#include <cmath>
#include <cstdlib>

#include "gtest/gtest.h"

namespace nftproxy::server::prom {
namespace {

TEST(MetricsText, Names) {
  EXPECT_TRUE(ValidMetricName("nftproxy_writes_total"));
  EXPECT_TRUE(ValidMetricName("a:b_c9"));
  EXPECT_TRUE(ValidMetricName(":x"));
  EXPECT_FALSE(ValidMetricName(""));
  EXPECT_FALSE(ValidMetricName("9x"));
  EXPECT_FALSE(ValidMetricName("a-b"));
  EXPECT_FALSE(ValidMetricName("a b"));
  EXPECT_TRUE(ValidLabelName("method"));
  EXPECT_TRUE(ValidLabelName("_x"));
  EXPECT_FALSE(ValidLabelName("__name__"));  // reserved
  EXPECT_FALSE(ValidLabelName("le"));        // histograms' own
  EXPECT_FALSE(ValidLabelName("a:b"));
  EXPECT_FALSE(ValidLabelName("1a"));
  EXPECT_FALSE(ValidLabelName(""));
}

TEST(MetricsText, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue(R"(a\b"c)" "\n" "d"), R"(a\\b\"c\nd)");
  EXPECT_EQ(EscapeLabelValue("plain ünïcode {}=,"), "plain ünïcode {}=,");
  // HELP escapes backslash and newline but not quotes.
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\nnext"), "say \"hi\"\\\\\\nnext");
  TextWriter w;
  w.Sample("m", {{"path", "C:\\dir\n\"x\""}}, 1);
  EXPECT_EQ(w.text(), "m{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST(MetricsText, Values) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(-17), "-17");
  EXPECT_EQ(FormatValue(1e15), "1000000000000000");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.00025), "0.00025");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  // Anything else reads back exactly.
  for (double v : {1.0 / 3, 1e300, 5e-324, 1764600000.123456789, 9007199254740993.0 * 4}) {
    EXPECT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v) << FormatValue(v);
  }
}

TEST(MetricsText, FamilyHeaderAndSamples) {
  TextWriter w;
  w.Family("nftproxy_writes_total", "Writes.\nSecond line \\ here", Type::kCounter);
  w.Sample("nftproxy_writes_total", {{"code", "OK"}, {"method", "Apply"}}, 3);
  w.Sample("nftproxy_writes_total", {}, 0);
  EXPECT_EQ(w.text(),
            "# HELP nftproxy_writes_total Writes.\\nSecond line \\\\ here\n"
            "# TYPE nftproxy_writes_total counter\n"
            "nftproxy_writes_total{code=\"OK\",method=\"Apply\"} 3\n"
            "nftproxy_writes_total 0\n");
}

TEST(MetricsText, HistogramBucketsAreCumulativeWithInf) {
  TextWriter w;
  w.Family("d_seconds", "Durations.", Type::kHistogram);
  // 2 at or below 0.1, 0 in (0.1, 1], 3 in (1, 2.5], 1 above.
  w.Histogram("d_seconds", {{"phase", "kernel"}}, {0.1, 1, 2.5}, {2, 0, 3, 1}, 12.75);
  EXPECT_EQ(w.text(),
            "# HELP d_seconds Durations.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{phase=\"kernel\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{phase=\"kernel\",le=\"1\"} 2\n"
            "d_seconds_bucket{phase=\"kernel\",le=\"2.5\"} 5\n"
            "d_seconds_bucket{phase=\"kernel\",le=\"+Inf\"} 6\n"
            "d_seconds_sum{phase=\"kernel\"} 12.75\n"
            "d_seconds_count{phase=\"kernel\"} 6\n");
}

TEST(MetricsText, HistogramWithoutLabelsOrObservations) {
  TextWriter w;
  w.Histogram("h", {}, {1}, {0, 0}, 0);
  EXPECT_EQ(w.text(), "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
}

}  // namespace
}  // namespace nftproxy::server::prom
