// The reflection index: the embedded .proto files, with comments and imports.
#include "server/reflection.h"

#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>

namespace nftproxy::server {
namespace {

TEST(ReflectionIndex, ServesFilesWithCommentsAndImports) {
  absl::StatusOr<std::unique_ptr<ReflectionIndex>> index = ReflectionIndex::Create({"nftproxy.v1.Proxy"});
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)->services(), std::vector<std::string>{"nftproxy.v1.Proxy"});
  for (const char* symbol : {"nftproxy.v1.Proxy", "nftproxy.v1.Proxy.Sync", "nftproxy.v1.ServiceSpec.Type",
                             "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}) {
    absl::StatusOr<std::vector<std::string>> files = (*index)->FileContainingSymbol(symbol);
    ASSERT_TRUE(files.ok()) << symbol << ": " << files.status();
    google::protobuf::FileDescriptorProto first;
    ASSERT_TRUE(first.ParseFromString(files->front()));
    EXPECT_GT(first.source_code_info().location_size(), 0) << symbol;
  }
  absl::StatusOr<std::vector<std::string>> api = (*index)->FileByName("nftproxy/v1/nftproxy.proto");
  ASSERT_TRUE(api.ok());
  std::vector<std::string> names;
  for (const std::string& f : *api) {
    google::protobuf::FileDescriptorProto p;
    ASSERT_TRUE(p.ParseFromString(f));
    names.push_back(p.name());
  }
  EXPECT_EQ(names.front(), "nftproxy/v1/nftproxy.proto");
  EXPECT_NE(std::find(names.begin(), names.end(), "google/protobuf/duration.proto"), names.end());
  EXPECT_EQ((*index)->FileByName("nope.proto").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*index)->FileContainingSymbol("nftproxy.v1.Nope").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace nftproxy::server
