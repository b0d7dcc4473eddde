// Who is calling and what they may do. Every call is made by a Caller (a
// unix-socket peer known by its uid and gids, a TLS peer known by its client
// certificate, an anonymous TLS peer, or a plaintext loopback peer), and a
// Policy grants it read or write access, a write optionally only for named
// sources and namespaces. The gRPC adapter asks before doing anything; a
// refusal is PERMISSION_DENIED naming the caller and changes nothing.
//
// The policy file (serve --authz FILE), YAML:
//
//   rules:
//   - match: ["uid:0", "group:nftproxy"]        # any of these identities
//     allow: write                              # read | write (write includes read)
//   - match: ["dns:adapter.example.com"]
//     allow: write
//     sources: ["cluster-adapter"]              # its writes must use one of these sources
//     namespaces: ["shop", "default"]           # and may change only these namespaces;
//                                               # its reads see only them
//   - match: ["cert:*", "unix:*"]
//     allow: read
//
// Identities a rule can match: uid:N, gid:N (primary or supplementary),
// user:NAME and group:NAME (resolved through /etc/passwd and /etc/group when
// the policy is loaded), unix:* (any unix-socket caller); cn:NAME,
// subject:DN, dns:NAME, uri:URI, email:ADDR, ip:ADDR (the verified client
// certificate's subject and SANs), cert:* (any verified client certificate);
// tls:anonymous (TLS without a client certificate); tcp:insecure (plaintext
// loopback TCP, serve --insecure-listen); * (anyone). A caller may do what
// any rule that matches it allows. Without a policy: unix-socket and
// insecure-loopback callers may write (whoever may open the socket, or reach
// the loopback port, may), callers with a verified client certificate may
// write, anonymous TLS callers may read.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/resource.h"

namespace nftproxy::server {

// One caller, as the transport identified it.
struct Caller {
  enum class Transport { kUnix, kTls, kInsecureTcp, kUnknown };
  Transport transport = Transport::kUnknown;
  // kUnix: from SO_PEERCRED / SO_PEERGROUPS when the connection was accepted.
  uint32_t uid = 0;
  std::vector<uint32_t> gids;  // primary first
  int32_t pid = 0;
  // kTls: the client certificate, when one was presented and verified.
  bool verified_cert = false;
  std::string subject, common_name;
  std::vector<std::string> sans;  // "dns:...", "uri:...", "email:...", "ip:..."
  std::string peer;               // gRPC's peer address

  // The identities a policy rule can match (see the file comment).
  std::vector<std::string> Identities() const;
  // How errors and logs name the caller: "uid 1000 gid 1000 (pid 42)",
  // "certificate CN=ops,O=Example", "anonymous TLS caller ipv4:10.0.0.1:5555".
  std::string Describe() const;
};

// The caller of a gRPC call. Unix-socket connections are looked up by the
// descriptor their peer address names (see server/unix_listener.h). A
// plaintext TCP caller is kInsecureTcp only when the server serves plaintext
// TCP (`insecure_tcp`: serve --insecure-listen), else kUnknown.
Caller CallerOf(const grpc::CallbackServerContext& ctx, bool insecure_tcp);

enum class Access { kRead, kWrite };

// What one matching rule lets a caller touch; nullopt: anything.
struct Grant {
  std::optional<std::set<std::string>> sources;
  std::optional<std::set<std::string>> namespaces;
};

// What an authorized caller may touch: the union of the grants of the rules
// that matched. Checked again by the engine for what a write changes.
struct Scope {
  std::string who;  // Caller::Describe()
  std::vector<Grant> grants;

  bool Unrestricted() const;
  // PERMISSION_DENIED unless one grant allows writing as `source` every
  // namespace in `namespaces`.
  absl::Status CheckWrite(const std::string& source, const std::set<std::string>& namespaces) const;
  // PERMISSION_DENIED unless one grant allows reading namespace `ns` (""
  // means every namespace, allowed only without a namespace restriction).
  absl::Status CheckRead(absl::string_view ns) const;
};

class Policy {
 public:
  // No file: the defaults described above.
  Policy() = default;
  // Reads `path`; InvalidArgument naming the file, the rule and the field.
  static absl::StatusOr<Policy> Load(const std::string& path);
  // `origin` names the text in errors. `etc` is where passwd and group are
  // read from to resolve user: and group: names.
  static absl::StatusOr<Policy> Parse(absl::string_view yaml, const std::string& origin,
                                      const std::string& etc = "/etc");

  // The scope `caller` may act in with `want`, or PERMISSION_DENIED naming
  // the caller and what it lacks.
  absl::StatusOr<Scope> Authorize(const Caller& caller, Access want) const;
  size_t rules() const { return rules_.size(); }

 private:
  struct Rule {
    std::vector<std::string> match;  // identities, names resolved to numbers
    Access allow = Access::kRead;
    Grant grant;
  };
  bool from_file_ = false;
  std::vector<Rule> rules_;
};

// The policy in force, replaced whole on reload (SIGHUP).
class PolicyHolder {
 public:
  explicit PolicyHolder(std::shared_ptr<const Policy> p) : policy_(std::move(p)) {}
  std::shared_ptr<const Policy> Get() const ABSL_LOCKS_EXCLUDED(mu_);
  void Set(std::shared_ptr<const Policy> p) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nftproxy::server
