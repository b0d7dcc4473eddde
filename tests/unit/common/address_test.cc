// Listen and server addresses, as `serve --listen` and `--server` take them.
#include "common/address.h"

#include <gtest/gtest.h>

namespace nftproxy {
namespace {

TEST(Address, UnixForms) {
  for (const char* text : {"unix:///run/x.sock", "unix:/run/x.sock", "/run/x.sock"}) {
    absl::StatusOr<Address> a = ParseAddress(text);
    ASSERT_TRUE(a.ok()) << text << ": " << a.status();
    EXPECT_EQ(a->kind, Address::Kind::kUnix);
    EXPECT_EQ(a->path, "/run/x.sock");
    EXPECT_EQ(a->GrpcTarget(), "unix:/run/x.sock");
    EXPECT_EQ(a->ToString(), "unix:///run/x.sock");
  }
  EXPECT_EQ(ParseAddress("./x.sock")->path, "./x.sock");
}

TEST(Address, TcpForms) {
  absl::StatusOr<Address> a = ParseAddress("tcp://127.0.0.1:7070");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7070);
  EXPECT_TRUE(a->IsLoopback());
  a = ParseAddress("[::1]:7070");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->GrpcTarget(), "[::1]:7070");
  EXPECT_EQ(a->ToString(), "tcp://[::1]:7070");
  EXPECT_TRUE(a->IsLoopback());
  a = ParseAddress("node1.example:443");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->IsLoopback());
  EXPECT_FALSE(ParseAddress("tcp://0.0.0.0:7070")->IsLoopback());
}

TEST(Address, RefusedWithTheReason) {
  auto why = [](const char* text) { return std::string(ParseAddress(text).status().message()); };
  EXPECT_NE(why("tcp://127.0.0.1:99999").find("port \"99999\" is not a number from 1 to 65535"), std::string::npos);
  EXPECT_NE(why("tcp://127.0.0.1:0").find("is not a number from 1 to 65535"), std::string::npos);
  EXPECT_NE(why("tcp://127.0.0.1:http").find("is not a number"), std::string::npos);
  EXPECT_NE(why("tcp://127.0.0.1").find("no port"), std::string::npos);
  EXPECT_NE(why("http://x:80").find("http:// is not a scheme"), std::string::npos);
  EXPECT_NE(why("tcp://::1:80").find("[ADDRESS]:PORT"), std::string::npos);
  EXPECT_NE(why("unix://").find("no socket path"), std::string::npos);
  EXPECT_NE(why("").find("empty"), std::string::npos);
  EXPECT_NE(why("x").find("want unix:///PATH"), std::string::npos);
}

}  // namespace
}  // namespace nftproxy
