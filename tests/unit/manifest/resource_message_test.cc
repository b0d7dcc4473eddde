#include "manifest/resource_message.h"

#include <gtest/gtest.h>

namespace nftproxy::manifest {
namespace {

TEST(ResourceMessage, BodyOfEveryKind) {
  for (const KindInfo& k : Kinds()) {
    v1::Resource r;
    google::protobuf::Message* body = MutableBodyOf(k, &r);
    EXPECT_EQ(r.kind_case(), k.oneof) << k.word;
    EXPECT_EQ(BodyOf(r), body) << k.word;
    EXPECT_EQ(body->GetDescriptor()->name(), k.manifest) << k.word;
  }
  EXPECT_EQ(BodyOf(v1::Resource()), nullptr);
}

TEST(ResourceMessage, ManifestKindsAreSpelledOneWay) {
  ASSERT_NE(KindByManifest("EndpointSlice"), nullptr);
  EXPECT_EQ(KindByManifest("EndpointSlice")->kind, v1::ENDPOINT_SLICE);
  EXPECT_EQ(KindByManifest("Service")->kind, v1::SERVICE);
  EXPECT_EQ(KindByManifest("service"), nullptr);
  EXPECT_EQ(KindByManifest("svc"), nullptr);
  EXPECT_EQ(KindByManifest("Endpoints"), nullptr);
  EXPECT_EQ(ManifestKinds(" or "), "Service, EndpointSlice or Workload");
  EXPECT_EQ(ManifestKinds(" and "), "Service, EndpointSlice and Workload");
}

}  // namespace
}  // namespace nftproxy::manifest
