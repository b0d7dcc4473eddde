// The API's resources as client and server share them: the kind table,
// identity, readiness, selectors, defaults, and errors that name them.
#include "common/resource.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "common/errors.h"
#include "common/grpc_status.h"

namespace nftproxy {
namespace {

v1::Resource FromText(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

TEST(ResourceOf, NamesTheKeyOnly) {
  const Key key{v1::ENDPOINT_SLICE, "prod", "web-1"};
  const v1::Resource r = ResourceOf(key);
  EXPECT_EQ(KeyOf(r), key);
  EXPECT_EQ(r.endpoint_slice().ByteSizeLong(), r.endpoint_slice().metadata().ByteSizeLong() + 2);
  EXPECT_EQ(ResourceOf(Key{}).kind_case(), v1::Resource::KIND_NOT_SET);
}

TEST(Kinds, EveryKindHasOneRowAndEveryAccessorAgrees) {
  for (const KindInfo& k : Kinds()) {
    EXPECT_EQ(FindKind(k.kind), &k);
    const v1::Resource r = ResourceOf(Key{k.kind, "ns", "n"});
    EXPECT_EQ(r.kind_case(), k.oneof);
    EXPECT_EQ(FindKind(r), &k);
    EXPECT_EQ(KindOf(r), k.kind);
    EXPECT_EQ(MetaOf(r).name(), "n");
    EXPECT_EQ(KindByWord(k.word), &k);
    EXPECT_EQ(KindByWord(k.plural), &k);
    EXPECT_EQ(KindByWord(k.short_name), &k);
    EXPECT_EQ(KindByWord(k.manifest), &k);
  }
  EXPECT_EQ(Kinds().size(), 3u);
  EXPECT_EQ(KindByWord("endpoints"), FindKind(v1::ENDPOINT_SLICE));
  EXPECT_EQ(KindByWord("pods"), nullptr);
  EXPECT_STREQ(KindName(v1::KIND_UNSPECIFIED), "resource");
  v1::Resource empty;
  EXPECT_EQ(KindOf(empty), v1::KIND_UNSPECIFIED);
  EXPECT_EQ(MutableMetaOf(&empty), nullptr);
  EXPECT_EQ(&MetaOf(empty), &v1::ObjectMeta::default_instance());
}

TEST(Identity, DescribeAndKeysDefaultTheNamespace) {
  v1::Resource r;
  r.mutable_service()->mutable_metadata()->set_name("web");
  EXPECT_EQ(KeyOf(r), (Key{v1::SERVICE, "default", "web"}));
  EXPECT_EQ(Describe(KeyOf(r)), "service default/web");
  const v1::ResourceRef ref = RefOf(Key{v1::WORKLOAD, "prod", "w"}, 7);
  EXPECT_EQ(KeyOf(ref), (Key{v1::WORKLOAD, "prod", "w"}));
  EXPECT_EQ(ref.resource_version(), 7u);
}

TEST(Meaning, ReadinessSelectorsAndAffinityDefault) {
  v1::EndpointConditions c;
  EXPECT_TRUE(EndpointReady(c));
  c.set_ready(false);
  EXPECT_FALSE(EndpointReady(c));
  google::protobuf::Map<std::string, std::string> sel, labels;
  EXPECT_TRUE(SelectorMatches(sel, labels));
  sel["app"] = "web";
  EXPECT_FALSE(SelectorMatches(sel, labels));
  labels["app"] = "web";
  labels["tier"] = "x";
  EXPECT_TRUE(SelectorMatches(sel, labels));
  labels["app"] = "db";
  EXPECT_FALSE(SelectorMatches(sel, labels));
  v1::ServiceSpec spec;
  EXPECT_EQ(AffinityTimeoutSeconds(spec), 0);
  spec.set_session_affinity(v1::ServiceSpec::CLIENT_IP);
  EXPECT_EQ(AffinityTimeoutSeconds(spec), kDefaultAffinityTimeoutSeconds);
  spec.mutable_session_affinity_timeout()->set_seconds(60);
  EXPECT_EQ(AffinityTimeoutSeconds(spec), 60);
}

TEST(Meaning, ExplicitDefaultsAreCleared) {
  v1::Resource r = FromText(R"pb(service { metadata { name: "web" }
    spec { type: CLUSTER_IP external_traffic_policy: CLUSTER internal_traffic_policy: CLUSTER
           session_affinity: NONE load_balancing: RANDOM ports { protocol: TCP port: 80 } ports { protocol: UDP port: 53 } } })pb");
  ClearExplicitDefaults(&r);
  EXPECT_EQ(r.ShortDebugString(),
            R"(service { metadata { name: "web" } spec { ports { port: 80 } ports { protocol: UDP port: 53 } } })");
  v1::Resource kept = FromText(R"pb(service { metadata { name: "web" }
    spec { type: NODE_PORT external_traffic_policy: LOCAL session_affinity: CLIENT_IP load_balancing: SOURCE_HASH } })pb");
  const std::string before = kept.ShortDebugString();
  ClearExplicitDefaults(&kept);
  EXPECT_EQ(kept.ShortDebugString(), before);
  v1::Resource slice = FromText(R"pb(endpoint_slice { metadata { name: "s" } ports { protocol: TCP port: 1 } })pb");
  ClearExplicitDefaults(&slice);
  EXPECT_EQ(slice.ShortDebugString(), R"(endpoint_slice { metadata { name: "s" } ports { port: 1 } })");
}

TEST(Errors, DetailNamesTheResourceAndSurvivesGrpc) {
  const Key key{v1::SERVICE, "prod", "web"};
  const absl::Status s = InvalidField(key, "spec.ports[1].port", "70000 is not a port");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "service prod/web: spec.ports[1].port: 70000 is not a port");
  std::optional<v1::ErrorDetail> d = ErrorDetailOf(s);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(KeyOf(d->resource()), key);
  EXPECT_EQ(d->field(), "spec.ports[1].port");

  const grpc::Status g = ToGrpcStatus(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), s.message());
  const absl::Status back = FromGrpcStatus(g);
  EXPECT_EQ(back.code(), s.code());
  EXPECT_EQ(back.message(), s.message());
  d = ErrorDetailOf(back);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(KeyOf(d->resource()), key);

  // A plain error carries none, either way.
  EXPECT_FALSE(ErrorDetailOf(absl::InternalError("x")).has_value());
  EXPECT_TRUE(ToGrpcStatus(absl::InternalError("x")).error_details().empty());
  EXPECT_FALSE(ErrorDetailOf(FromGrpcStatus(grpc::Status(grpc::StatusCode::INTERNAL, "x"))).has_value());
  // Without a field the message has no field part.
  EXPECT_EQ(ResourceError(absl::StatusCode::kAborted, key, "", "conflict").message(), "service prod/web: conflict");
}

}  // namespace
}  // namespace nftproxy
