// Watch over real gRPC (a server on a unix socket in this process, served by
// NewWatchReactor, and callback clients): thousands of streams without a
// thread each, every write reaching every stream, the stream cap, a reader
// too slow to keep up, cancellation and shutdown.
#include "server/watch_stream.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/errors.h"
#include "common/grpc_status.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::server {
namespace {

class FakeDataplane : public dp::Dataplane {
 public:
  absl::Status Apply(const dp::Model&, dp::ApplyResult*) override { return absl::OkStatus(); }
  absl::Status Update(const dp::ModelChange&, dp::ApplyResult*) override { return absl::OkStatus(); }
  std::string Installed() const override { return ""; }
  std::string InstalledService(const std::string&) const override { return ""; }
  std::unique_ptr<dp::InstalledRuleset> Snapshot() const override { return nullptr; }
  std::string Table() const override { return "inet t"; }
};

// Only Watch, as the real service serves it: a raw callback method.
class WatchOnly final : public v1::Proxy::WithRawCallbackMethod_Watch<v1::Proxy::CallbackService> {
 public:
  explicit WatchOnly(WriteEngine* engine) : engine_(engine) {}
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request) override {
    grpc::ByteBuffer copy(*request);
    v1::WatchRequest req;
    if (!grpc::SerializationTraits<v1::WatchRequest>::Deserialize(&copy, &req).ok()) {
      auto* r = new Refused;
      r->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a WatchRequest"));
      return r;
    }
    return NewWatchReactor(ctx, engine_, std::move(req));
  }

 private:
  struct Refused : grpc::ServerWriteReactor<grpc::ByteBuffer> {
    void OnDone() override { delete this; }
  };
  WriteEngine* const engine_;
};

int64_t ProcStatus(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::string v = line.substr(field.size() + 1);
      v.erase(std::remove_if(v.begin(), v.end(), [](char c) { return !isdigit(c); }), v.end());
      int64_t n = 0;
      if (absl::SimpleAtoi(v, &n)) return n;
    }
  }
  return -1;
}

// gRPC stays initialized for the whole run: when the last server or channel
// of a test went away, gRPC's own shutdown could wait ~10 s for a timer.
const bool kGrpcKept = (grpc_init(), true);

// A WriteEngine served over gRPC on a unix socket, and clients of it.
class Server {
 public:
  explicit Server(EngineOptions options = {}) : engine_(&fake_, std::move(options)), service_(&engine_) {
    char tmpl[] = "/tmp/npx-watch-XXXXXX";
    dir_ = mkdtemp(tmpl);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_ + "/s.sock", grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~Server() {
    engine_.Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A channel of its own (streams over many connections, as from many
  // clients).
  std::unique_ptr<v1::Proxy::Stub> Stub(int id = 0, bool small_window = false) {
    grpc::ChannelArguments args;
    args.SetInt("nftproxy.test.channel", id);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (small_window) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);  // flow control stays at 64 KiB
    return v1::Proxy::NewStub(
        grpc::CreateCustomChannel("unix:" + dir_ + "/s.sock", grpc::InsecureChannelCredentials(), args));
  }

  WriteEngine& engine() { return engine_; }

  // Applies an EndpointSlice `name` with `endpoints` addresses (about 20
  // bytes each in an event); returns the revision.
  uint64_t Write(const std::string& name, int endpoints = 1) {
    v1::ApplyRequest req;
    v1::EndpointSlice* s = req.add_upserts()->mutable_endpoint_slice();
    s->mutable_metadata()->set_name(name);
    s->set_service_name("svc");
    for (int i = 0; i < endpoints; ++i) {
      s->add_endpoints()->add_addresses(absl::StrCat("198.18.", 1 + i / 250, ".", 1 + i % 250));
    }
    // A different port each time, so that every write changes something.
    s->add_ports()->set_port(static_cast<int32_t>(1 + (++writes_ % 60000)));
    v1::ApplyResponse resp;
    absl::Status st = engine_.Apply(req, &resp);
    EXPECT_TRUE(st.ok()) << st;
    return resp.revision();
  }

 private:
  FakeDataplane fake_;
  WriteEngine engine_;
  WatchOnly service_;
  std::string dir_;
  std::unique_ptr<grpc::Server> server_;
  int writes_ = 0;
};

// One Watch call, read on gRPC's threads. `hold`: stop reading after that
// many events until Release.
class Reader final : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  Reader(v1::Proxy::Stub* stub, v1::WatchRequest req, size_t hold = SIZE_MAX) : req_(std::move(req)), hold_(hold) {
    stub->async()->Watch(&ctx_, &req_, this);
    StartRead(&event_);
    StartCall();
  }
  // The call must be over before its context goes.
  ~Reader() {
    Cancel();
    Finish().IgnoreError();  // cancelled: how it ended does not matter here
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    absl::MutexLock lock(&mu_);
    revisions_.push_back(event_.type() == v1::WatchEvent::BOOKMARK ? -static_cast<int64_t>(event_.revision())
                                                                    : static_cast<int64_t>(event_.revision()));
    if (revisions_.size() >= hold_) {
      held_ = true;
      return;
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    status_ = FromGrpcStatus(s);
    done_ = true;
  }

  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = SIZE_MAX;
    if (held_) {
      held_ = false;
      StartRead(&event_);
    }
  }
  void Cancel() { ctx_.TryCancel(); }

  // Waits (up to `timeout`) for `n` events; true if they came.
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return revisions_.size() >= n || done_; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return revisions_.size() >= n;
  }
  absl::Status Finish(absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) << "the call did not end";
    return status_;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  // The revision of each event, in order; a BOOKMARK's negated.
  std::vector<int64_t> revisions() {
    absl::MutexLock lock(&mu_);
    return revisions_;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return revisions_.size();
  }

 private:
  grpc::ClientContext ctx_;
  const v1::WatchRequest req_;
  v1::WatchEvent event_;
  absl::Mutex mu_;
  size_t hold_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int64_t> revisions_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

v1::WatchRequest Since(uint64_t rev) {
  v1::WatchRequest req;
  req.set_since_revision(rev);
  return req;
}

bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(WatchStream, InitialStatePageByPageThenBookmarkThenChanges) {
  Server server;
  for (int i = 0; i < 250; ++i) server.Write(absl::StrCat("s", i));
  auto stub = server.Stub();
  Reader r(stub.get(), Since(0));
  ASSERT_TRUE(r.WaitFor(251));
  std::vector<int64_t> got = r.revisions();
  EXPECT_EQ(std::count(got.begin(), got.begin() + 250, 250), 250);  // every UPSERT at the current revision
  EXPECT_EQ(got[250], -250);                                          // then the BOOKMARK
  server.Write("s0");
  ASSERT_TRUE(r.WaitFor(252));
  EXPECT_EQ(r.revisions()[251], 251);
  r.Cancel();
  EXPECT_EQ(r.Finish().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(WaitUntil([&] { return server.engine().watch_hub().streams() == 0; }));
}

// Thousands of streams on a handful of threads; every write reaches every
// stream, and writes stay fast.
TEST(WatchStream, ThousandsOfStreamsWithoutAThreadEach) {
  constexpr int kStreams = 5000;
  constexpr int kChannels = 50;
  constexpr int kWrites = 50;
  Server server;
  std::vector<std::unique_ptr<v1::Proxy::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) stubs.push_back(server.Stub(i));
  // One stream per channel first, so that connections and gRPC's threads
  // exist before counting.
  std::vector<std::unique_ptr<Reader>> readers;
  for (int i = 0; i < kChannels; ++i) readers.push_back(std::make_unique<Reader>(stubs[i].get(), Since(0)));
  for (auto& r : readers) ASSERT_TRUE(r->WaitFor(1));
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t threads_before = ProcStatus("Threads");
  const int64_t rss_before = ProcStatus("VmRSS");
  const absl::Time opening = absl::Now();
  for (int i = kChannels; i < kStreams; ++i) {
    readers.push_back(std::make_unique<Reader>(stubs[i % kChannels].get(), Since(0)));
  }
  for (auto& r : readers) ASSERT_TRUE(r->WaitFor(1)) << "no bookmark";
  const absl::Duration open_time = absl::Now() - opening;
  EXPECT_EQ(server.engine().watch_hub().streams(), static_cast<size_t>(kStreams));
  const int64_t threads_open = ProcStatus("Threads");
  const int64_t rss_open = ProcStatus("VmRSS");

  std::vector<absl::Duration> write_times, delivery_times;
  for (int w = 1; w <= kWrites; ++w) {
    const absl::Time start = absl::Now();
    server.Write(absl::StrCat("s", w));
    write_times.push_back(absl::Now() - start);
    for (auto& r : readers) ASSERT_TRUE(r->WaitFor(1 + static_cast<size_t>(w))) << "write " << w << " not delivered";
    delivery_times.push_back(absl::Now() - start);
  }
  const int64_t threads_after = ProcStatus("Threads");
  const int64_t rss_after = ProcStatus("VmRSS");
  // Every stream: the bookmark, then each write once, in order.
  std::vector<int64_t> want = {0};
  for (int w = 1; w <= kWrites; ++w) want.push_back(w);
  for (auto& r : readers) ASSERT_EQ(r->revisions(), want);

  std::sort(write_times.begin(), write_times.end());
  std::sort(delivery_times.begin(), delivery_times.end());
  std::cout << kStreams << " streams (opened in " << open_time << "): threads " << threads_before << " -> "
            << threads_open << " -> " << threads_after << "; RSS " << rss_before / 1024 << " -> " << rss_open / 1024
            << " -> " << rss_after / 1024 << " MiB (" << (rss_open - rss_before) * 1024 / (kStreams - kChannels)
            << " bytes per stream, client and server)\n"
            << "Apply with all of them open: p50 " << write_times[kWrites / 2] << ", p99 " << write_times[kWrites - 1]
            << "; delivered to every stream: p50 " << delivery_times[kWrites / 2] << ", max "
            << delivery_times[kWrites - 1] << "\n";
  EXPECT_LT(threads_open - threads_before, 20);
  EXPECT_LT(threads_after - threads_before, 20);
  EXPECT_LT(write_times[kWrites / 2], absl::Milliseconds(50));

  for (auto& r : readers) r->Cancel();
  for (auto& r : readers) EXPECT_EQ(r->Finish().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(WaitUntil([&] { return server.engine().watch_hub().streams() == 0; }));
}

TEST(WatchStream, StreamsBeyondTheCapAreRefused) {
  EngineOptions options;
  options.max_watch_streams = 3;
  Server server(options);
  auto stub = server.Stub();
  std::vector<std::unique_ptr<Reader>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<Reader>(stub.get(), Since(0)));
    ASSERT_TRUE(open.back()->WaitFor(1));
  }
  Reader extra(stub.get(), Since(0));
  absl::Status s = extra.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("at most 3 at once (--max-watch-streams)"), std::string::npos) << s;
  // The open ones keep working.
  const uint64_t rev = server.Write("a");
  for (auto& r : open) {
    ASSERT_TRUE(r->WaitFor(2));
    EXPECT_EQ(r->revisions()[1], static_cast<int64_t>(rev));
  }
  // A cancelled stream frees its place at once.
  open[0]->Cancel();
  EXPECT_EQ(open[0]->Finish().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(WaitUntil([&] { return server.engine().watch_hub().streams() == 2; }, absl::Seconds(2)));
  Reader another(stub.get(), Since(0));
  EXPECT_TRUE(another.WaitFor(2));  // the current state (one slice) and the bookmark
  EXPECT_FALSE(another.done());
}

// A reader that stops reading: HTTP/2 flow control holds the server's one
// write; once the stream is too far behind for over a second it ends with
// ABORTED and the revision everything up to which it received; a new Watch
// from there gets the rest.
TEST(WatchStream, ATooSlowReaderEndsWithTheRevisionToResumeFrom) {
  EngineOptions options;
  options.watch_buffer_events = 50;
  Server server(options);
  auto stub = server.Stub(0, /*small_window=*/true);
  Reader slow(stub.get(), Since(0), /*hold=*/1);
  ASSERT_TRUE(slow.WaitFor(1));  // the bookmark, then it reads no more
  constexpr int kWrites = 400;   // each event ~4 KiB: far more than the windows hold
  uint64_t last = 0;
  for (int i = 0; i < kWrites; ++i) last = server.Write(absl::StrCat("s", i % 7), 200);
  absl::SleepFor(absl::Milliseconds(1200));  // the grace
  server.Write("late");                      // (any write: the hub looks again)
  ++last;
  slow.Release();
  absl::Status s = slow.Finish();
  ASSERT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s);
  ASSERT_TRUE(detail.has_value());
  const uint64_t resume = detail->resume_revision();
  EXPECT_NE(s.message().find(absl::StrCat("resume with since_revision=", resume)), std::string::npos) << s;
  EXPECT_NE(s.message().find("--watch-buffer-events"), std::string::npos) << s;
  std::vector<int64_t> got = slow.revisions();
  std::cout << "the slow reader got " << got.size() - 1 << " of " << last << " events, then: " << s << "\n";
  // Everything up to `resume` arrived, nothing after it.
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(static_cast<uint64_t>(got.back()), resume);
  EXPECT_LT(resume, last);
  Reader rest(stub.get(), Since(resume));
  ASSERT_TRUE(rest.WaitFor(last - resume + 1));
  std::vector<int64_t> more = rest.revisions();
  for (int64_t r : more) got.push_back(r);
  std::vector<int64_t> want = {0};
  for (uint64_t r = 1; r <= last; ++r) want.push_back(static_cast<int64_t>(r));
  want.push_back(-static_cast<int64_t>(last));
  EXPECT_EQ(got, want);
}

// Streams cancelled while writes wake them, and opened while others end:
// every one goes (its place freed, nothing used after it is deleted).
TEST(WatchStream, CancellingWhileWritesWakeStreams) {
  Server server;
  std::vector<std::unique_ptr<v1::Proxy::Stub>> stubs;
  for (int i = 0; i < 4; ++i) stubs.push_back(server.Stub(i));
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; writing; ++i) server.Write(absl::StrCat("s", i % 20));
  });
  for (int round = 0; round < 20; ++round) {
    std::vector<std::unique_ptr<Reader>> readers;
    for (int i = 0; i < 50; ++i) readers.push_back(std::make_unique<Reader>(stubs[i % 4].get(), Since(0)));
    absl::SleepFor(absl::Milliseconds(round % 5));
    for (auto& r : readers) r->Cancel();
    for (auto& r : readers) {
      absl::Status s = r->Finish();
      EXPECT_TRUE(s.code() == absl::StatusCode::kCancelled) << s;
    }
  }
  writing = false;
  writer.join();
  EXPECT_TRUE(WaitUntil([&] { return server.engine().watch_hub().streams() == 0; }));
}

TEST(WatchStream, ShutdownEndsStreamsWithTheRevisionToResumeFrom) {
  Server server;
  server.Write("a");
  auto stub = server.Stub();
  Reader r(stub.get(), Since(0));
  ASSERT_TRUE(r.WaitFor(2));
  server.engine().Shutdown();
  absl::Status s = r.Finish(absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(s.message(), "the server is shutting down; resume from revision 1");
  ASSERT_TRUE(ErrorDetailOf(s).has_value());
  EXPECT_EQ(ErrorDetailOf(s)->resume_revision(), 1u);
  Reader late(stub.get(), Since(0));
  EXPECT_EQ(late.Finish().code(), absl::StatusCode::kUnavailable);
}

TEST(WatchStream, RevisionsItCannotResumeFromAreOutOfRange) {
  Server server;
  auto stub = server.Stub();
  Reader r(stub.get(), Since(5));
  absl::Status s = r.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_NE(s.message().find("newer than the server's"), std::string::npos) << s;
}

}  // namespace
}  // namespace nftproxy::server
