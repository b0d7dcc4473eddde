// Trace (`nftproxy trace`): the request checked, then a reactor whose one
// thread installs the trace table (dataplane/trace.h), reads the kernel's
// trace events, decodes them and writes each finished step to the caller,
// waiting for each write (the client's flow control paces it), until the
// duration ends, enough events were sent or the caller goes away; then it
// removes the trace table and finishes the call. At most
// ProxyService::kMaxTraces run at once, so the threads are bounded.
#pragma once

#include <atomic>
#include <cstdint>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dataplane/trace.h"
#include "nftproxy/v1/nftproxy.pb.h"
#include "server/write_engine.h"

namespace nftproxy::server {

inline constexpr absl::Duration kDefaultTraceDuration = absl::Seconds(10);
inline constexpr absl::Duration kMaxTraceDuration = absl::Seconds(60);
inline constexpr uint32_t kDefaultTraceCount = 100;
inline constexpr uint32_t kMaxTraceCount = 10000;

struct TraceSpec {
  dp::TraceFilter filter;
  absl::Duration duration = kDefaultTraceDuration;
  uint32_t count = kDefaultTraceCount;
};
// The request checked: INVALID_ARGUMENT naming the field otherwise.
absl::StatusOr<TraceSpec> CheckTraceRequest(const v1::TraceRequest& req);

// The event as the API sends it (with its one-line text).
v1::TraceEvent TraceEventOf(const dp::TraceStep& step);

// Starts the trace; `*traces` (already counted for this call) is decreased
// when the call is done.
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewTraceReactor(grpc::CallbackServerContext* ctx, WriteEngine* engine,
                                                             TraceSpec spec, std::atomic<int>* traces);

}  // namespace nftproxy::server
