// absl::Status <-> grpc::Status, keeping the ErrorDetail (common/errors.h) in
// the status details trailer (an RpcStatus, shaped like google.rpc.Status).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace nftproxy {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace nftproxy
