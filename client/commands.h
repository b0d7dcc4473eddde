// The client commands, one method each, over one connection to the server.
// cli.cc parses the flags and picks the method; commands_write.cc holds the
// commands that send manifests (apply, delete, diff, sync), commands_read.cc
// those that only read (get, describe, explain, watch, status, version).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/rpc.h"
#include "common/resource.h"
#include "manifest/manifest.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::client {

struct Options {
  std::string server = kDefaultServer;
  std::string file;
  std::string ns;
  bool all_namespaces = false;
  std::string output;
  std::string source;
  std::string since;
  // trace
  std::string trace_from, trace_to, trace_proto, trace_port, trace_duration, trace_count;
  bool dry_run = false;
  bool kernel = false;  // explain --kernel
  bool client_only = false;
  bool help = false;
  bool version = false;
  bool no_headers = false;
  bool ignore_not_found = false;
  // -l, --selector
  std::string selector;
  // --request-timeout as given ("" : the defaults of rpc.h), and parsed.
  std::string request_timeout;
  absl::Duration call_timeout = absl::FromChrono(kCallTimeout);
  absl::Duration connect_timeout = absl::FromChrono(kConnectTimeout);
  // --tls-ca, --tls-cert, --tls-key, --tls-server-name (and their
  // environment variables).
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  // After the command word.
  std::vector<std::string> positional;
};

// Prints "error: WHY" and where to find the command's help; kExitBadInput.
int Usage(const std::string& command, const std::string& why);

class Client {
 public:
  // `channel` leads to what o.server names; the timeouts come from `o`.
  Client(const Options& o, std::shared_ptr<grpc::Channel> channel);

  // commands_write.cc
  int Apply(const Options& o);
  int Delete(const Options& o);
  int Diff(const Options& o);
  int Sync(const Options& o);

  // commands_read.cc
  int Get(const Options& o);
  int Describe(const Options& o);
  int Explain(const Options& o);
  int Watch(const Options& o);

  // commands_trace.cc
  int Trace(const Options& o);
  int Status(const Options& o);
  int Version(const Options& o);

 private:
  template <typename Req, typename Resp>
  absl::Status Call(grpc::Status (v1::Proxy::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp) {
    return client::Call(stub_.get(), method, req, resp, call_timeout_);
  }
  int Report(const absl::Status& s, const std::vector<ManifestDoc>& docs = {}) const {
    return client::Report(s, server_, docs);
  }

  static const char* DryRun(const Options& o) { return o.dry_run ? " (dry run)" : ""; }
  // Where a NAME on the command line is looked up.
  static std::string Namespace(const Options& o) { return o.ns.empty() ? kDefaultNamespace : o.ns; }

  // The kernel's connection counters of namespace `ns` ("": every one the
  // caller may read), or of one service; per "ns/name/PROTOCOL/port".
  // Empty when the server counts nothing or cannot say (an older server).
  // New connections per service port ("ns/name/PROTO/port"); with `raw`,
  // the whole answer too (per-endpoint counters).
  std::map<std::string, uint64_t> Connections(const std::string& ns, const std::string& service, bool* enabled,
                                              v1::GetCountersResponse* raw = nullptr);

  // Connects (within the connect timeout) before a command does anything
  // slow on its own side, such as reading a large manifest: an unreachable
  // server is reported at once. kExitOk or what Report returns.
  int Connect();
  // Reads -f PATH (warnings to stderr), filling in -n for documents without
  // a namespace and clearing explicit defaults (ClearExplicitDefaults), and
  // hands each document to `take` in order. The one place that reads
  // manifests: a reader that parses document by document replaces the
  // LoadManifests call here and nothing else.
  int ReadManifests(const Options& o, const std::string& command, const std::function<void(ManifestDoc&&)>& take);
  // ReadManifests into a vector.
  int Load(const Options& o, const std::string& command, std::vector<ManifestDoc>* docs);
  int GetOne(const Key& key, v1::Resource* out);
  // Every resource of `kind` in `ns` ("": all), page by page, to `take`.
  int List(v1::Kind kind, const std::string& ns, const std::function<void(const v1::Resource&)>& take);

  const std::string server_;
  const absl::Duration call_timeout_;
  const absl::Duration connect_timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Proxy::Stub> stub_;
};

}  // namespace nftproxy::client
