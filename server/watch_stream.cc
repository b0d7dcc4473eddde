#include "server/watch_stream.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"

namespace nftproxy::server {

namespace {

// A message for gRPC that refers to the shared bytes (no copy): every stream
// sending a change sends the same bytes.
grpc::ByteBuffer Wrap(std::shared_ptr<const std::string> bytes) {
  auto* keep = new std::shared_ptr<const std::string>(std::move(bytes));
  grpc::Slice slice(
      const_cast<char*>((*keep)->data()), (*keep)->size(),
      [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); }, keep);
  return grpc::ByteBuffer(&slice, 1);
}

// One Watch call. Entered from gRPC's threads (construction, OnWriteDone,
// OnCancel, OnDone) and from the hub's (the cursor's `wake`); mu_ orders
// them. At most one write is in flight.
class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  WatchReactor(WriteEngine* engine, const v1::WatchRequest& req) {
    // Held while the cursor is opened: a `wake` that comes at once waits
    // until cursor_ is set.
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::shared_ptr<WatchCursor>> cursor = engine->OpenWatch(req, [this] { Step(); });
    if (!cursor.ok()) {
      FinishLocked(ToGrpcStatus(cursor.status()));
      return;
    }
    cursor_ = *std::move(cursor);
    StepLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      // No later write can succeed: the client went away.
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    StepLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  }

  void OnDone() override {
    std::shared_ptr<WatchCursor> cursor;
    {
      absl::MutexLock lock(&mu_);
      cursor = cursor_;
    }
    // Frees the stream's place in the hub; once it returns no `wake` runs
    // (it waits for one under way), so this can go.
    if (cursor != nullptr) cursor->Close();
    delete this;
  }

 private:
  void Step() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    StepLocked();
  }

  // Starts the next write, or ends the call, or (nothing to send) leaves the
  // stream idle until the cursor's `wake`.
  void StepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    while (next_ == queue_.size()) {
      // Everything taken before was written: the cursor counts it delivered.
      queue_.clear();
      next_ = 0;
      absl::Status s = cursor_->Next(&queue_);
      if (!s.ok()) {
        FinishLocked(ToGrpcStatus(s));
        return;
      }
      if (queue_.empty()) return;
    }
    grpc::ByteBuffer message = Wrap(std::move(queue_[next_].bytes));
    ++next_;
    buffer_.Swap(&message);
    writing_ = true;
    StartWrite(&buffer_);
  }

  void FinishLocked(grpc::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(s));
  }

  absl::Mutex mu_;
  std::shared_ptr<WatchCursor> cursor_ ABSL_GUARDED_BY(mu_);
  // What the cursor gave and is not written yet: queue_[next_...].
  std::vector<WatchItem> queue_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  // The message being written (gRPC reads it until OnWriteDone).
  grpc::ByteBuffer buffer_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewWatchReactor(grpc::CallbackServerContext* ctx, WriteEngine* engine,
                                                            v1::WatchRequest req) {
  return new WatchReactor(engine, req);
}

}  // namespace nftproxy::server
