// Watch on gRPC's callback API: one reactor per stream, no thread per
// stream. The reactor keeps one write in flight and pulls the next events
// from the stream's WatchCursor (server/watch_hub.h) when it completes; with
// nothing to send it is idle until the hub wakes it. HTTP/2 flow control
// holds the write of a client that does not read; the hub ends such a
// stream once it is too far behind (ABORTED, with the revision to resume
// from).
#pragma once

#include <grpcpp/grpcpp.h>

#include "nftproxy/v1/nftproxy.pb.h"
#include "server/write_engine.h"

namespace nftproxy::server {

// Serves one Watch call on the callback API: the events `req` asks for, as
// serialized v1::WatchEvent messages. Refused at once (the call ends with
// that status): RESOURCE_EXHAUSTED beyond EngineOptions::max_watch_streams,
// OUT_OF_RANGE for a revision the server cannot resume from, UNAVAILABLE
// after WriteEngine::Shutdown. The reactor deletes itself when the call is
// done; every one must be done before `engine` goes away (grpc::Server::
// Shutdown waits for them; WriteEngine::Shutdown ends them first).
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewWatchReactor(grpc::CallbackServerContext* ctx, WriteEngine* engine,
                                                            v1::WatchRequest req);

}  // namespace nftproxy::server
