// The desired state's byte index (Wire) and UserBytes.
#include "server/desired.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace nftproxy::server {
namespace {

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
