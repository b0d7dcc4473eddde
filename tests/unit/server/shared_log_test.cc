// The shared log's change encoding: what a node writes is what the others
// read back, with the entry's revision as every resource's version.
#include "server/shared_log.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace nftproxy::server {
namespace {

v1::Resource Res(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

TEST(ChangeEncoding, RoundTripsWithTheEntrysRevisionAsVersion) {
  v1::Resource web = Res(R"(service { metadata { name: "web" namespace: "prod" source: "ci" resource_version: 7 }
      spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })");
  Change change;
  change.emplace_back(KeyOf(web), web);
  change.emplace_back(Key{v1::ENDPOINT_SLICE, "prod", "web-1"}, std::nullopt);
  absl::StatusOr<Change> back = DecodeChange(EncodeChange(change), 1234);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  // Deletes first, then upserts (a key appears once, so the order within a
  // change does not matter).
  EXPECT_EQ((*back)[0].first, (Key{v1::ENDPOINT_SLICE, "prod", "web-1"}));
  EXPECT_FALSE((*back)[0].second.has_value());
  EXPECT_EQ((*back)[1].first, KeyOf(web));
  ASSERT_TRUE((*back)[1].second.has_value());
  EXPECT_EQ(MetaOf(*(*back)[1].second).resource_version(), 1234u);
  EXPECT_EQ(MetaOf(*(*back)[1].second).source(), "ci");
  MutableMetaOf(&web)->set_resource_version(1234);
  EXPECT_EQ((*back)[1].second->SerializeAsString(), web.SerializeAsString());
}

TEST(ChangeEncoding, DamageIsDataLoss) {
  EXPECT_EQ(DecodeChange("\xff\xff\xff", 1).status().code(), absl::StatusCode::kDataLoss);
  v1::Resource web = Res(R"(service { metadata { name: "web" namespace: "default" } })");
  Change twice;
  twice.emplace_back(KeyOf(web), web);
  twice.emplace_back(KeyOf(web), std::nullopt);
  EXPECT_EQ(DecodeChange(EncodeChange(twice), 1).status().code(), absl::StatusCode::kDataLoss);
  v1::ApplyRequest nameless;
  nameless.add_upserts()->mutable_service();
  EXPECT_EQ(DecodeChange(nameless.SerializeAsString(), 1).status().code(), absl::StatusCode::kDataLoss);
}

TEST(ChangeEncoding, FoldingReplaysInOrder) {
  std::map<Key, v1::Resource> objects;
  v1::Resource a = Res(R"(service { metadata { name: "a" namespace: "default" } })");
  v1::Resource b = Res(R"(service { metadata { name: "b" namespace: "default" } })");
  FoldChange(*DecodeChange(EncodeChange({{KeyOf(a), a}, {KeyOf(b), b}}), 10), &objects);
  FoldChange(*DecodeChange(EncodeChange({{KeyOf(a), std::nullopt}}), 20), &objects);
  FoldChange(*DecodeChange(EncodeChange({{KeyOf(b), b}}), 30), &objects);
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(MetaOf(objects.at(KeyOf(b))).resource_version(), 30u);
}

}  // namespace
}  // namespace nftproxy::server
