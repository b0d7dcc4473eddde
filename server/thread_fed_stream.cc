#include "server/thread_fed_stream.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include <thread>
#include <utility>

#include "common/grpc_status.h"

namespace nftproxy::server {

void ThreadFedStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  failed_ = failed_ || !ok;
}

void ThreadFedStream::OnCancel() {
  absl::MutexLock lock(&mu_);
  failed_ = true;
}

void ThreadFedStream::OnDone() {
  open_->fetch_sub(1);
  delete this;
}

void ThreadFedStream::Start(std::function<absl::Status()> body) {
  std::thread([this, body = std::move(body)] {
    const absl::Status status = body();
    Finish(ToGrpcStatus(status));  // the last use of `this` on this thread
  }).detach();
}

bool ThreadFedStream::Failed() {
  absl::MutexLock lock(&mu_);
  return failed_;
}

bool ThreadFedStream::Write(const google::protobuf::MessageLite& m, absl::Status* status, absl::Time deadline) {
  // Into a new buffer: gRPC serializes only into an empty one, and buffer_
  // still holds the previous message (written by now).
  grpc::ByteBuffer next;
  bool own = false;
  if (absl::Status s =
          FromGrpcStatus(grpc::SerializationTraits<google::protobuf::MessageLite>::Serialize(m, &next, &own));
      !s.ok()) {
    *status = s;
    return false;
  }
  buffer_.Swap(&next);
  {
    absl::MutexLock lock(&mu_);
    if (failed_) {
      *status = absl::CancelledError("the client went away");
      return false;
    }
    writing_ = true;
  }
  StartWrite(&buffer_);
  absl::MutexLock lock(&mu_);
  auto written = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&written), deadline)) {
    // A client that reads nothing until the deadline: the call ends.
    ctx_->TryCancel();
    failed_ = true;
    mu_.Await(absl::Condition(&written));
  }
  if (failed_) *status = absl::CancelledError("the client went away");
  return !failed_;
}

}  // namespace nftproxy::server
