// Reading requests as bytes (server/wire.h) and the stored resources' Wire
// (server/desired.h): a resource re-sent as the same bytes is found without
// parsing, and only as long as those bytes still describe what is stored.
#include "server/wire.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "server/desired.h"

namespace nftproxy::server {
namespace {

v1::SyncRequest SyncReq(const std::string& text) {
  v1::SyncRequest r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

TEST(SplitField, ResourcesAndTheRest) {
  const v1::SyncRequest req = SyncReq(R"(
    source: "a"
    resources { service { metadata { name: "x" } spec { cluster_ips: "198.19.0.1" ports { port: 80 } } } }
    dry_run: true
    resources { workload { metadata { name: "w" } addresses: "198.18.0.9" } })");
  const std::string bytes = req.SerializeAsString();
  std::vector<absl::string_view> items;
  std::string rest;
  ASSERT_TRUE(SplitField(bytes, v1::SyncRequest::kResourcesFieldNumber, "SyncRequest", &items, &rest).ok());
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0], req.resources(0).SerializeAsString());
  EXPECT_EQ(items[1], req.resources(1).SerializeAsString());
  v1::SyncRequest head;
  ASSERT_TRUE(head.ParseFromString(rest));
  EXPECT_EQ(head.source(), "a");
  EXPECT_TRUE(head.dry_run());
  EXPECT_EQ(head.resources_size(), 0);
}

TEST(SplitField, UnknownFieldsStayInTheRest) {
  // Field 15 (varint), 16 (fixed64), 17 (fixed32), 18 (bytes): not in SyncRequest.
  std::string bytes = SyncReq("source: 'a'").SerializeAsString();
  const std::string unknown = std::string("\x78\x05", 2) + std::string("\x81\x01", 2) + std::string(8, '\x01') +
                              std::string("\x8d\x01", 2) + std::string(4, '\x02') + std::string("\x92\x01\x02hi", 5);
  bytes += unknown;
  std::vector<absl::string_view> items;
  std::string rest;
  ASSERT_TRUE(SplitField(bytes, 2, "SyncRequest", &items, &rest).ok());
  EXPECT_TRUE(items.empty());
  EXPECT_EQ(rest, bytes);
}

TEST(SplitField, MalformedInputNamesTheOffset) {
  std::vector<absl::string_view> items;
  std::string rest;
  // A resources field claiming 100 bytes where 3 follow.
  const std::string truncated("\x0a\x01" "a" "\x12\x64" "abc", 7);
  absl::Status s = SplitField(truncated, 2, "SyncRequest", &items, &rest);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("SyncRequest: not a valid protobuf message"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("at byte 3"), std::string::npos) << s;
  // Field 2 as a varint is not a message.
  s = SplitField(std::string("\x10\x01", 2), 2, "SyncRequest", &items, &rest);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("not length-delimited"), std::string::npos) << s;
  // A varint that never ends, a field number 0, a group.
  EXPECT_FALSE(SplitField(std::string("\x08\xff\xff", 3), 2, "x", &items, &rest).ok());
  EXPECT_FALSE(SplitField(std::string("\x00\x01", 2), 2, "x", &items, &rest).ok());
  EXPECT_FALSE(SplitField(std::string("\x0b", 1), 2, "x", &items, &rest).ok());
}

v1::Resource Service(const std::string& name, const std::string& ip) {
  v1::Resource r;
  r.mutable_service()->mutable_metadata()->set_name(name);
  r.mutable_service()->mutable_spec()->add_cluster_ips(ip);
  r.mutable_service()->mutable_spec()->add_ports()->set_port(80);
  return r;
}

const Key kX{v1::SERVICE, "default", "x"};

TEST(DesiredWire, FoundOnlyWhileItDescribesTheStoredResource) {
  Desired d;
  const std::string sent = Service("x", "198.19.0.1").SerializeAsString();
  d.Put(kX, Service("x", "198.19.0.1"), "", Wire{sent, "src", 7});
  auto m = d.MatchWire(sent);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m->key, kX);
  EXPECT_EQ(m->wire->source, "src");
  EXPECT_EQ(m->wire->version, 7u);
  EXPECT_FALSE(d.MatchWire(Service("x", "198.19.0.2").SerializeAsString()).has_value());
  // Replaced from other bytes: the old ones no longer match.
  const std::string other = Service("x", "198.19.0.2").SerializeAsString();
  d.Put(kX, Service("x", "198.19.0.2"), "", Wire{other, "", 0});
  EXPECT_FALSE(d.MatchWire(sent).has_value());
  EXPECT_TRUE(d.MatchWire(other).has_value());
  // Replaced without bytes (a rollback, a restore): nothing matches.
  d.Put(kX, Service("x", "198.19.0.2"));
  EXPECT_FALSE(d.MatchWire(other).has_value());
  // Learned again from a request that left it unchanged.
  d.SetWire(kX, Wire{other, "", 0});
  EXPECT_TRUE(d.MatchWire(other).has_value());
  d.Put(kX, std::nullopt);
  EXPECT_FALSE(d.MatchWire(other).has_value());
  EXPECT_EQ(d.Find(kX), nullptr);
}

TEST(DesiredWire, RollbackForgetsTheNewBytes) {
  Desired d;
  const std::string before = Service("x", "198.19.0.1").SerializeAsString();
  d.Put(kX, Service("x", "198.19.0.1"), "", Wire{before, "", 0});
  Txn txn(&d);
  const std::string after = Service("x", "198.19.0.3").SerializeAsString();
  txn.Put(kX, Service("x", "198.19.0.3"), "", Wire{after, "", 0});
  EXPECT_TRUE(d.MatchWire(after).has_value());
  txn.Rollback();
  EXPECT_FALSE(d.MatchWire(after).has_value());
  ASSERT_NE(d.Find(kX), nullptr);
  EXPECT_EQ(d.Find(kX)->service().spec().cluster_ips(0), "198.19.0.1");
}

TEST(UserBytesTest, IgnoresWhatTheServerAssigns) {
  v1::Resource a = Service("x", "198.19.0.1");
  v1::Resource b = a;
  v1::ObjectMeta* m = b.mutable_service()->mutable_metadata();
  m->set_namespace_("default");
  m->set_source("src");
  m->set_resource_version(9);
  m->mutable_create_time()->set_seconds(1);
  m->mutable_update_time()->set_seconds(2);
  const v1::Resource b_before = b;
  EXPECT_EQ(UserBytes(&a), UserBytes(&b));
  // b is as it was.
  EXPECT_EQ(b.SerializeAsString(), b_before.SerializeAsString());
  b.mutable_service()->mutable_spec()->add_ports()->set_port(81);
  EXPECT_NE(UserBytes(&a), UserBytes(&b));
}

}  // namespace
}  // namespace nftproxy::server
