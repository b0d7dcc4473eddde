// A server-streaming reactor fed by a thread of its own: the body runs there
// and may block; each Write waits until gRPC has written the message (the
// client's flow control paces the thread), and the thread finishes the call
// last. StreamRuleset and Trace are such streams.
#pragma once

#include <grpcpp/grpcpp.h>
#include <google/protobuf/message_lite.h>

#include <atomic>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace nftproxy::server {

class ThreadFedStream : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  // Counts the stream off `open` and deletes it.
  void OnDone() override;

 protected:
  // `open`: the streams of this kind under way, decremented when done.
  ThreadFedStream(grpc::CallbackServerContext* ctx, std::atomic<int>* open) : ctx_(ctx), open_(open) {}
  ~ThreadFedStream() override = default;

  // Runs `body` on a detached thread, then finishes the call with its status.
  // Called last in the subclass's constructor.
  void Start(std::function<absl::Status()> body);

  // Sends `m` and waits until it is written: false, with *status set, when
  // the client went away, or when it read nothing until `deadline` (then the
  // call is cancelled).
  bool Write(const google::protobuf::MessageLite& m, absl::Status* status,
             absl::Time deadline = absl::InfiniteFuture());
  // The client went away (or a write timed out).
  bool Failed();

 private:
  grpc::CallbackServerContext* const ctx_;
  std::atomic<int>* const open_;
  grpc::ByteBuffer buffer_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace nftproxy::server
