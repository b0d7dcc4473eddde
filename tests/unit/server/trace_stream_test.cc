// Trace requests (trace_stream.cc): bad input is INVALID_ARGUMENT naming
// the field; events carry the decoded step and its line.
#include "server/trace_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nftproxy::server {
namespace {

using ::testing::HasSubstr;

v1::TraceRequest Good() {
  v1::TraceRequest r;
  r.set_from("198.18.1.2");
  r.set_to("198.19.0.10");
  r.set_protocol(v1::UDP);
  r.set_port(53);
  return r;
}

void ExpectInvalid(const v1::TraceRequest& r, const std::string& field) {
  absl::StatusOr<TraceSpec> spec = CheckTraceRequest(r);
  ASSERT_FALSE(spec.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(spec.status())) << spec.status();
  EXPECT_THAT(std::string(spec.status().message()), ::testing::StartsWith(field + ": "));
}

TEST(TraceRequest, GoodOneWithDefaults) {
  absl::StatusOr<TraceSpec> spec = CheckTraceRequest(Good());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->filter.src.ToString(), "198.18.1.2");
  EXPECT_EQ(spec->filter.dst.ToString(), "198.19.0.10");
  EXPECT_EQ(spec->filter.proto, dp::L4Proto::kUdp);
  EXPECT_EQ(spec->filter.port, 53);
  EXPECT_EQ(spec->duration, kDefaultTraceDuration);
  EXPECT_EQ(spec->count, kDefaultTraceCount);
}

TEST(TraceRequest, BadFieldsAreNamed) {
  v1::TraceRequest r = Good();
  r.set_from("web");
  ExpectInvalid(r, "from");
  r = Good();
  r.set_to("1.2.3");
  ExpectInvalid(r, "to");
  r = Good();
  r.set_to("2001:db8::1");
  ExpectInvalid(r, "to");
  r = Good();
  r.set_port(0);
  ExpectInvalid(r, "port");
  r.set_port(70000);
  ExpectInvalid(r, "port");
  r = Good();
  r.mutable_duration()->set_seconds(61);
  ExpectInvalid(r, "duration");
  r.mutable_duration()->set_seconds(-1);
  ExpectInvalid(r, "duration");
  r = Good();
  r.set_count(kMaxTraceCount + 1);
  ExpectInvalid(r, "count");
}

TEST(TraceRequest, DurationWithinTheCap) {
  v1::TraceRequest r = Good();
  r.mutable_duration()->set_seconds(60);
  absl::StatusOr<TraceSpec> spec = CheckTraceRequest(r);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->duration, absl::Seconds(60));
}

TEST(TraceEvent, CarriesTheStepAndItsLine) {
  dp::TraceStep s;
  s.id = 3;
  s.packet = "tcp 1.1.1.1:1 -> 2.2.2.2:80";
  s.hook = "prerouting";
  s.path = {"services map -> svc4/a/b/tcp/80 (service a/b)"};
  s.service = "a/b";
  s.verdict = "dnat";
  v1::TraceEvent e = TraceEventOf(s);
  EXPECT_EQ(e.service(), "a/b");
  EXPECT_EQ(e.verdict(), "dnat");
  EXPECT_THAT(e.text(), HasSubstr("prerouting: services map -> svc4/a/b/tcp/80 (service a/b) -> accepted"));
}

}  // namespace
}  // namespace nftproxy::server
