// The client commands, one method each, over one connection to the server.
// cli.cc parses the flags and picks the method; commands_write.cc holds the
// commands that send manifests (apply, delete, diff, sync), commands_read.cc
// those that only read (get, describe, explain, watch, status, version).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/manifest.h"
#include "client/rpc.h"
#include "common/resource.h"
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
  bool dry_run = false;
  bool client_only = false;
  bool help = false;
  // After the command word.
  std::vector<std::string> positional;
};

// Prints "error: WHY" and where to find the command's help; kExitBadInput.
int Usage(const std::string& command, const std::string& why);

class Client {
 public:
  explicit Client(const std::string& server);

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
  int Status(const Options& o);
  int Version(const Options& o);

 private:
  template <typename Req, typename Resp>
  absl::Status Call(grpc::Status (v1::Proxy::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp, std::chrono::seconds timeout = kCallTimeout) {
    return client::Call(stub_.get(), method, req, resp, timeout);
  }
  int Report(const absl::Status& s, const std::vector<ManifestDoc>& docs = {}) const {
    return client::Report(s, server_, docs);
  }

  static const char* DryRun(const Options& o) { return o.dry_run ? " (dry run)" : ""; }
  // Where a NAME on the command line is looked up.
  static std::string Namespace(const Options& o) { return o.ns.empty() ? kDefaultNamespace : o.ns; }

  // Reads -f PATH (warnings to stderr), filling in -n for documents without
  // a namespace.
  int Load(const Options& o, const std::string& command, std::vector<ManifestDoc>* docs);
  int GetOne(const Key& key, v1::Resource* out);
  int List(v1::Kind kind, const std::string& ns, std::vector<v1::Resource>* out);

  const std::string server_;
  std::unique_ptr<v1::Proxy::Stub> stub_;
};

}  // namespace nftproxy::client
