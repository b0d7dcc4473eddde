// gRPC server reflection (grpc.reflection.v1alpha and v1), served from the
// .proto files compiled into the binary WITH their comments, so that
// `grpcurl describe nftproxy.v1.SyncRequest` shows the API's documentation.
// (gRPC's own reflection plugin serves the descriptors linked into the
// program, which carry no comments.)
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace google::protobuf {
class DescriptorPool;
class SimpleDescriptorDatabase;
}  // namespace google::protobuf

namespace nftproxy::server {

// What both protocol versions answer from.
class ReflectionIndex {
 public:
  // From the embedded descriptor set; `services` are the names
  // list_services reports.
  static absl::StatusOr<std::unique_ptr<ReflectionIndex>> Create(std::vector<std::string> services);
  ~ReflectionIndex();

  const std::vector<std::string>& services() const { return services_; }
  // The serialized FileDescriptorProtos of `file` and of every file it
  // imports, `file` first; NotFound for an unknown one.
  absl::StatusOr<std::vector<std::string>> FileByName(const std::string& file) const;
  absl::StatusOr<std::vector<std::string>> FileContainingSymbol(const std::string& symbol) const;

 private:
  ReflectionIndex();
  std::vector<std::string> services_;
  std::unique_ptr<google::protobuf::SimpleDescriptorDatabase> db_;
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
};

// One protocol version; the versions share message shapes but not types.
// Served on gRPC's callback API: an open stream is a reactor, not a thread;
// each request is answered in turn, and the stream ends (OK) when the client
// closes its side or goes away.
template <typename Service, typename Request, typename Response>
class ReflectionService final : public Service::CallbackService {
 public:
  explicit ReflectionService(const ReflectionIndex* index) : index_(index) {}
  grpc::ServerBidiReactor<Request, Response>* ServerReflectionInfo(grpc::CallbackServerContext* ctx) override;

 private:
  const ReflectionIndex* index_;
};

using ReflectionV1Alpha =
    ReflectionService<::grpc::reflection::v1alpha::ServerReflection,
                      ::grpc::reflection::v1alpha::ServerReflectionRequest,
                      ::grpc::reflection::v1alpha::ServerReflectionResponse>;
using ReflectionV1 = ReflectionService<::grpc::reflection::v1::ServerReflection,
                                       ::grpc::reflection::v1::ServerReflectionRequest,
                                       ::grpc::reflection::v1::ServerReflectionResponse>;

}  // namespace nftproxy::server
