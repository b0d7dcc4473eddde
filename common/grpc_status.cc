#include "common/grpc_status.h"

#include "common/errors.h"

namespace nftproxy {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(s.code());
  std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s);
  if (!detail) return grpc::Status(code, std::string(s.message()));
  v1::RpcStatus details;
  details.set_code(static_cast<int32_t>(s.code()));
  details.set_message(std::string(s.message()));
  details.add_details()->PackFrom(*detail);
  return grpc::Status(code, std::string(s.message()), details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  v1::RpcStatus details;
  if (s.error_details().empty() || !details.ParseFromString(s.error_details())) return out;
  for (const google::protobuf::Any& any : details.details()) {
    v1::ErrorDetail detail;
    if (any.UnpackTo(&detail)) {
      SetErrorDetail(&out, detail);
      break;
    }
  }
  return out;
}

}  // namespace nftproxy
