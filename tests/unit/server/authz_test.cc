// The authorization policy: parsing (every mistake named), the defaults
// without a policy, matching identities, and the scopes writes and reads are
// held to.
#include "server/authz.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace nftproxy::server {
namespace {

Caller Unix(uint32_t uid, std::vector<uint32_t> gids) {
  Caller c;
  c.transport = Caller::Transport::kUnix;
  c.uid = uid;
  c.gids = std::move(gids);
  c.pid = 42;
  return c;
}

Caller Cert(std::string cn, std::vector<std::string> sans) {
  Caller c;
  c.transport = Caller::Transport::kTls;
  c.verified_cert = true;
  c.common_name = cn;
  c.subject = "CN=" + cn + ",O=npx";
  c.sans = std::move(sans);
  return c;
}

Caller Anonymous() {
  Caller c;
  c.transport = Caller::Transport::kTls;
  c.peer = "ipv4:127.0.0.1:5555";
  return c;
}

TEST(Policy, DefaultsWithoutAFile) {
  Policy p;
  EXPECT_TRUE(p.Authorize(Unix(1000, {1000}), Access::kWrite).ok());
  EXPECT_TRUE(p.Authorize(Cert("ops", {}), Access::kWrite).ok());
  EXPECT_TRUE(p.Authorize(Anonymous(), Access::kRead).ok());
  absl::StatusOr<Scope> s = p.Authorize(Anonymous(), Access::kWrite);
  ASSERT_TRUE(absl::IsPermissionDenied(s.status()));
  EXPECT_NE(s.status().message().find("anonymous TLS caller ipv4:127.0.0.1:5555 may not write"), std::string::npos)
      << s.status();
  Caller unknown;
  EXPECT_TRUE(absl::IsPermissionDenied(p.Authorize(unknown, Access::kRead).status()));
}

class PolicyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    etc_ = std::filesystem::temp_directory_path() / ("npx-authz-" + std::to_string(getpid()));
    std::filesystem::create_directories(etc_);
    std::ofstream(etc_ / "passwd") << "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    std::ofstream(etc_ / "group") << "root:x:0:\nnftproxy:x:990:alice\n";
  }
  void TearDown() override { std::filesystem::remove_all(etc_); }
  absl::StatusOr<Policy> Parse(const std::string& text) { return Policy::Parse(text, "authz.yaml", etc_.string()); }
  std::filesystem::path etc_;
};

TEST_F(PolicyFile, MistakesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"rules: {}", "authz.yaml: want a mapping with a list \"rules\""},
      {"rules: []\nextra: 1", "authz.yaml: unknown field \"extra\""},
      {"rules: [{allow: read}]", "authz.yaml: rules[0].match: want a non-empty list of identities"},
      {"rules: [{match: [\"uid:x\"], allow: read}]", "rules[0].match: \"uid:x\": want a number after uid:"},
      {"rules: [{match: [\"user:bob\"], allow: read}]", "rules[0].match: \"user:bob\": no such user in"},
      {"rules: [{match: [\"bob\"], allow: read}]", "rules[0].match: \"bob\": not an identity"},
      {"rules: [{match: [\"*\"], allow: all}]", "rules[0].allow: want read or write"},
      {"rules: [{match: [\"*\"], allow: read, namespaces: shop}]", "rules[0].namespaces: want a list of names"},
      {"rules: [{match: [\"*\"], allow: read, verbs: [get]}]", "rules[0]: unknown field \"verbs\""},
      {"rules: [{match: [\"*\"]", "authz.yaml: "},
  };
  for (const auto& [text, says] : cases) {
    absl::StatusOr<Policy> p = Parse(text);
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << text;
    EXPECT_NE(p.status().message().find(says), std::string::npos) << text << "\n" << p.status();
  }
}

TEST_F(PolicyFile, NamesAndNumbersMatch) {
  absl::StatusOr<Policy> p = Parse(R"(rules:
- match: ["user:alice"]
  allow: write
- match: ["group:nftproxy"]
  allow: read
- match: ["dns:adapter.example", "cn:ops"]
  allow: write
  sources: ["adapter"]
  namespaces: ["shop"]
- match: ["cert:*"]
  allow: read
  namespaces: ["shop", "web"]
)");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Authorize(Unix(1000, {1000}), Access::kWrite).ok());
  // gid 990 as a supplementary group: may read, not write.
  EXPECT_TRUE(p->Authorize(Unix(1001, {1001, 990}), Access::kRead).ok());
  absl::StatusOr<Scope> denied = p->Authorize(Unix(1001, {1001, 990}), Access::kWrite);
  ASSERT_TRUE(absl::IsPermissionDenied(denied.status()));
  EXPECT_NE(denied.status().message().find("uid 1001 gid 1001 (pid 42) may not write: no rule"), std::string::npos);
  EXPECT_TRUE(absl::IsPermissionDenied(p->Authorize(Unix(0, {0}), Access::kRead).status()));

  absl::StatusOr<Scope> adapter = p->Authorize(Cert("adapter", {"dns:adapter.example"}), Access::kWrite);
  ASSERT_TRUE(adapter.ok());
  EXPECT_FALSE(adapter->Unrestricted());
  EXPECT_TRUE(adapter->CheckWrite("adapter", {"shop"}).ok());
  EXPECT_TRUE(adapter->CheckWrite("adapter", {}).ok());
  absl::Status s = adapter->CheckWrite("adapter", {"shop", "default"});
  EXPECT_TRUE(absl::IsPermissionDenied(s));
  EXPECT_NE(s.message().find("may not write as source \"adapter\" in namespaces default, shop"), std::string::npos)
      << s;
  EXPECT_TRUE(absl::IsPermissionDenied(adapter->CheckWrite("other", {"shop"})));
  // Reads: the union of the read grants: shop (its own rule) and web (cert:*).
  absl::StatusOr<Scope> reads = p->Authorize(Cert("adapter", {"dns:adapter.example"}), Access::kRead);
  ASSERT_TRUE(reads.ok());
  EXPECT_TRUE(reads->CheckRead("shop").ok());
  EXPECT_TRUE(reads->CheckRead("web").ok());
  s = reads->CheckRead("");
  EXPECT_TRUE(absl::IsPermissionDenied(s));
  EXPECT_NE(s.message().find("may read only namespaces [shop, web]; name one of them"), std::string::npos) << s;
  EXPECT_TRUE(absl::IsPermissionDenied(reads->CheckRead("default")));
  // Anonymous TLS and plaintext callers match no rule here.
  EXPECT_TRUE(absl::IsPermissionDenied(p->Authorize(Anonymous(), Access::kRead).status()));
}

TEST_F(PolicyFile, GrantsAreNotMixed) {
  // Source a in namespace x, source b in namespace y: a may not write y.
  absl::StatusOr<Policy> p = Parse(R"(rules:
- {match: ["cn:ci"], allow: write, sources: [a], namespaces: [x]}
- {match: ["cn:ci"], allow: write, sources: [b], namespaces: [y]}
)");
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<Scope> s = p->Authorize(Cert("ci", {}), Access::kWrite);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->CheckWrite("a", {"x"}).ok());
  EXPECT_TRUE(s->CheckWrite("b", {"y"}).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(s->CheckWrite("a", {"y"})));
  EXPECT_TRUE(absl::IsPermissionDenied(s->CheckWrite("a", {"x", "y"})));
}

TEST(Caller, Identities) {
  EXPECT_EQ(Unix(7, {8, 9}).Identities(), (std::vector<std::string>{"*", "unix:*", "uid:7", "gid:8", "gid:9"}));
  EXPECT_EQ(Cert("ops", {"dns:ops.example"}).Identities(),
            (std::vector<std::string>{"*", "cert:*", "cn:ops", "subject:CN=ops,O=npx", "dns:ops.example"}));
  EXPECT_EQ(Anonymous().Identities(), (std::vector<std::string>{"*", "tls:anonymous"}));
}

}  // namespace
}  // namespace nftproxy::server
