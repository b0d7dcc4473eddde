// The reflection index: the embedded .proto files, with comments and imports.
#include "server/reflection.h"

#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

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

// Both protocol versions over gRPC (callback services): several requests on
// one stream, answered in order; the stream ends OK when the client closes
// its side; a cancelled stream goes away.
template <typename Service, typename Request, typename Response>
void Converse(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = Service::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->ServerReflectionInfo(&ctx);
  Request list;
  list.set_host("h");
  list.set_list_services("*");
  Request symbol;
  symbol.set_file_containing_symbol("nftproxy.v1.SyncRequest");
  Request unknown;
  unknown.set_file_containing_symbol("nftproxy.v1.Nope");
  for (const Request* req : {&list, &symbol, &unknown}) ASSERT_TRUE(stream->Write(*req));
  Response resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.valid_host(), "h");
  ASSERT_EQ(resp.list_services_response().service_size(), 2);
  EXPECT_EQ(resp.list_services_response().service(0).name(), "nftproxy.v1.Proxy");
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
  google::protobuf::FileDescriptorProto first;
  ASSERT_TRUE(first.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(first.name(), "nftproxy/v1/nftproxy.proto");
  EXPECT_GT(first.source_code_info().location_size(), 0);
  EXPECT_EQ(resp.original_request().file_containing_symbol(), "nftproxy.v1.SyncRequest");
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(resp.error_response().error_message(), "Symbol not found.");
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_TRUE(stream->Finish().ok());

  grpc::ClientContext cancelled;
  auto gone = stub->ServerReflectionInfo(&cancelled);
  ASSERT_TRUE(gone->Write(list));
  ASSERT_TRUE(gone->Read(&resp));
  cancelled.TryCancel();
  EXPECT_EQ(gone->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(ReflectionService, AnswersOverGrpc) {
  absl::StatusOr<std::unique_ptr<ReflectionIndex>> index =
      ReflectionIndex::Create({"nftproxy.v1.Proxy", "grpc.health.v1.Health"});
  ASSERT_TRUE(index.ok()) << index.status();
  ReflectionV1Alpha v1alpha(index->get());
  ReflectionV1 v1(index->get());
  char tmpl[] = "/tmp/npx-reflection-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string target = "unix:" + dir + "/s.sock";
  grpc::ServerBuilder builder;
  builder.AddListeningPort(target, grpc::InsecureServerCredentials());
  builder.RegisterService(&v1alpha);
  builder.RegisterService(&v1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  Converse<::grpc::reflection::v1alpha::ServerReflection, ::grpc::reflection::v1alpha::ServerReflectionRequest,
           ::grpc::reflection::v1alpha::ServerReflectionResponse>(channel);
  Converse<::grpc::reflection::v1::ServerReflection, ::grpc::reflection::v1::ServerReflectionRequest,
           ::grpc::reflection::v1::ServerReflectionResponse>(channel);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nftproxy::server
