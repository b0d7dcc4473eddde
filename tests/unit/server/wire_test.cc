// Reading requests as bytes: each resource's bytes cut out without parsing.
#include "server/wire.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "nftproxy/v1/nftproxy.pb.h"


namespace nftproxy::server {
namespace {

namespace v1 = ::nftproxy::v1;

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

}  // namespace
}  // namespace nftproxy::server
