// A small client of etcd's v3 gRPC API (KV and Watch), for keeping the
// desired state in etcd (issue: many nodes, one desired state). The
// messages are etcd's own (proto/: generated from Debian's copy of etcd's
// definitions); this wraps the calls the store needs with absl::Status
// errors that name etcd and the endpoints, and deadlines on every call.
//
// Endpoints are URLs, http://HOST:PORT or https://HOST:PORT (TLS, with
// EtcdOptions' CA and client certificate), several for a cluster: one gRPC
// channel balances over them (round robin) and moves on when a member goes
// away. Numeric addresses work in the static build, as everywhere.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace nftproxy::server {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // http(s)://HOST:PORT
  // PEM files; a CA (and a client pair, when etcd asks for one) for https.
  std::string ca_file, cert_file, key_file;
  // Each call's deadline.
  absl::Duration timeout = absl::Seconds(5);
};

struct EtcdKeyValue {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  bool more = false;      // keys beyond `limit` remain
  int64_t revision = 0;   // the store's revision the range was read at
};

// The keys from `key` up to (not including) `range_end`; "" range_end: the
// key alone. The end of every key that starts with `prefix`:
std::string EtcdPrefixEnd(const std::string& prefix);

// A parsed endpoint URL: the gRPC address and whether it wants TLS.
struct EtcdEndpoint {
  std::string address;  // HOST:PORT ([v6]:PORT)
  bool tls = false;
};
absl::StatusOr<EtcdEndpoint> ParseEtcdEndpoint(const std::string& url);

class EtcdWatch;

class EtcdClient {
 public:
  // Checks the options (endpoints all http or all https; readable PEM
  // files); does not wait for etcd to answer.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Connect(const EtcdOptions& options);

  // Reads [key, range_end) at `revision` (0: the newest), at most `limit`
  // keys (0: all) in key order, from `key` on. Serializable reads are not
  // used: every read is linearizable (a node cut off from the quorum gets an
  // error, not an old answer).
  absl::StatusOr<EtcdRange> Range(const std::string& key, const std::string& range_end, int64_t revision = 0,
                                  int64_t limit = 0);
  // Waits until the channel is connected to a member (start-up).
  absl::Status WaitConnected(absl::Duration timeout);
  // One transaction, as etcd takes it.
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& req);
  // Forgets history up to `revision` (tests, and keeping history bounded).
  absl::Status Compact(int64_t revision);

  // Follows every change to keys under `prefix` from `start_revision` on.
  // `on_events` gets each response's events with the revision they make the
  // store complete up to (also for progress notifications without events);
  // `on_end` once, with why the watch ended: OUT_OF_RANGE naming the
  // compacted revision when history from start_revision is gone, UNAVAILABLE
  // when etcd cannot be reached or the connection broke, CANCELLED after
  // EtcdWatch::Cancel. Both run on the watch's own thread.
  struct WatchEvent {
    bool put = true;  // false: deleted
    EtcdKeyValue kv;
  };
  using EventsFn = std::function<void(const std::vector<WatchEvent>& events, int64_t revision)>;
  using EndFn = std::function<void(absl::Status)>;
  std::unique_ptr<EtcdWatch> Watch(const std::string& prefix, int64_t start_revision, EventsFn on_events,
                                   EndFn on_end);

  const std::string& endpoints_text() const { return endpoints_text_; }

 private:
  EtcdClient(std::shared_ptr<grpc::Channel> channel, std::string endpoints_text, absl::Duration timeout);
  absl::Status Error(const grpc::Status& s, const char* what) const;
  // One KV call with the deadline, its error naming etcd and `what`.
  template <typename Req, typename Resp>
  absl::Status Unary(grpc::Status (etcdserverpb::KV::Stub::*call)(grpc::ClientContext*, const Req&, Resp*),
                     const Req& req, Resp* resp, const char* what);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  const std::string endpoints_text_;
  const absl::Duration timeout_;
};

// One watch stream and its thread; ends (and joins) on Cancel or when
// destroyed. Callbacks never run after Cancel returns.
class EtcdWatch {
 public:
  ~EtcdWatch();
  void Cancel();

 private:
  friend class EtcdClient;
  EtcdWatch() = default;
  grpc::ClientContext context_;
  std::thread thread_;
};

}  // namespace nftproxy::server
