#include "server/reflection.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "descriptor_set.h"

namespace nftproxy::server {

ReflectionIndex::ReflectionIndex() = default;
ReflectionIndex::~ReflectionIndex() = default;

absl::StatusOr<std::unique_ptr<ReflectionIndex>> ReflectionIndex::Create(std::vector<std::string> services) {
  google::protobuf::FileDescriptorSet set;
  if (!set.ParseFromArray(kDescriptorSet, static_cast<int>(kDescriptorSetSize))) {
    return absl::InternalError("the embedded descriptor set does not parse");
  }
  std::unique_ptr<ReflectionIndex> index(new ReflectionIndex);
  index->services_ = std::move(services);
  index->db_ = std::make_unique<google::protobuf::SimpleDescriptorDatabase>();
  for (const google::protobuf::FileDescriptorProto& file : set.file()) {
    if (!index->db_->Add(file)) return absl::InternalError(absl::StrCat("duplicate descriptor ", file.name()));
  }
  index->pool_ = std::make_unique<google::protobuf::DescriptorPool>(index->db_.get());
  return index;
}

absl::StatusOr<std::vector<std::string>> ReflectionIndex::FileByName(const std::string& file) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::vector<std::string> todo = {file};
  while (!todo.empty()) {
    const std::string name = todo.back();
    todo.pop_back();
    if (!seen.insert(name).second) continue;
    google::protobuf::FileDescriptorProto proto;
    if (!db_->FindFileByName(name, &proto)) {
      return absl::NotFoundError(absl::StrCat("file not found: ", name));
    }
    for (const std::string& dep : proto.dependency()) todo.push_back(dep);
    out.push_back(proto.SerializeAsString());
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ReflectionIndex::FileContainingSymbol(const std::string& symbol) const {
  const google::protobuf::FileDescriptor* file = pool_->FindFileContainingSymbol(symbol);
  if (file == nullptr) return absl::NotFoundError("Symbol not found.");
  return FileByName(file->name());
}

namespace {

template <typename Request, typename Response>
void Answer(const ReflectionIndex& index, const Request& req, Response* resp) {
  resp->set_valid_host(req.host());
  *resp->mutable_original_request() = req;
  absl::StatusOr<std::vector<std::string>> files = absl::NotFoundError("");
  switch (req.message_request_case()) {
    case Request::kFileByFilename:
      files = index.FileByName(req.file_by_filename());
      break;
    case Request::kFileContainingSymbol:
      files = index.FileContainingSymbol(req.file_containing_symbol());
      break;
    case Request::kListServices:
      for (const std::string& name : index.services()) {
        resp->mutable_list_services_response()->add_service()->set_name(name);
      }
      return;
    case Request::kAllExtensionNumbersOfType:
      // The API defines no extensions.
      resp->mutable_all_extension_numbers_response()->set_base_type_name(req.all_extension_numbers_of_type());
      return;
    case Request::kFileContainingExtension:
      files = absl::NotFoundError("Extension not found.");
      break;
    default:
      files = absl::InvalidArgumentError("no request in ServerReflectionRequest");
      break;
  }
  if (!files.ok()) {
    resp->mutable_error_response()->set_error_code(static_cast<int32_t>(files.status().code()));
    resp->mutable_error_response()->set_error_message(std::string(files.status().message()));
    return;
  }
  for (std::string& f : *files) resp->mutable_file_descriptor_response()->add_file_descriptor_proto(std::move(f));
}

// Reads a request, writes its answer, reads the next: one operation in
// flight at a time, so the reactions never run concurrently.
template <typename Request, typename Response>
class ReflectionReactor final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit ReflectionReactor(const ReflectionIndex* index) : index_(index) { this->StartRead(&req_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or went away)
      this->Finish(grpc::Status::OK);
      return;
    }
    resp_.Clear();
    Answer(*index_, req_, &resp_);
    this->StartWrite(&resp_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      this->Finish(grpc::Status::OK);
      return;
    }
    this->StartRead(&req_);
  }

  void OnDone() override { delete this; }

 private:
  const ReflectionIndex* const index_;
  Request req_;
  Response resp_;
};

}  // namespace

template <typename Service, typename Request, typename Response>
grpc::ServerBidiReactor<Request, Response>* ReflectionService<Service, Request, Response>::ServerReflectionInfo(
    grpc::CallbackServerContext*) {
  return new ReflectionReactor<Request, Response>(index_);
}

template class ReflectionService<::grpc::reflection::v1alpha::ServerReflection,
                                 ::grpc::reflection::v1alpha::ServerReflectionRequest,
                                 ::grpc::reflection::v1alpha::ServerReflectionResponse>;
template class ReflectionService<::grpc::reflection::v1::ServerReflection,
                                 ::grpc::reflection::v1::ServerReflectionRequest,
                                 ::grpc::reflection::v1::ServerReflectionResponse>;

}  // namespace nftproxy::server
