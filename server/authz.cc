#include "server/authz.h"

#include <grpc/grpc_security_constants.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/id_files.h"
#include "server/unix_listener.h"

namespace nftproxy::server {

namespace {

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// NAME -> id from an /etc/passwd- or /etc/group-shaped file (name:x:id:...):
// common/id_files.h, no NSS (also in the static binary).
std::optional<uint32_t> LookupId(const std::string& file, absl::string_view name) {
  return LookupIdInFile(file, name);
}

constexpr const char* kIdentityKinds[] = {"uid:", "gid:", "user:", "group:", "cn:",  "subject:",
                                          "dns:", "uri:", "email:", "ip:"};
constexpr const char* kWildcards[] = {"*", "unix:*", "cert:*", "tls:anonymous", "tcp:insecure"};

// An identity as written in a policy, with user: and group: resolved to
// uid: and gid:.
absl::StatusOr<std::string> ResolveIdentity(const std::string& text, const std::string& etc) {
  for (const char* w : kWildcards) {
    if (text == w) return text;
  }
  for (const char* kind : kIdentityKinds) {
    absl::string_view rest = text;
    if (!absl::ConsumePrefix(&rest, kind)) continue;
    if (rest.empty()) break;
    uint32_t id = 0;
    if ((absl::string_view(kind) == "uid:" || absl::string_view(kind) == "gid:") && !absl::SimpleAtoi(rest, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(Quoted(text), ": want a number after ", kind));
    }
    if (absl::string_view(kind) == "user:" || absl::string_view(kind) == "group:") {
      const bool user = absl::string_view(kind) == "user:";
      std::optional<uint32_t> found = LookupId(absl::StrCat(etc, user ? "/passwd" : "/group"), rest);
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat(Quoted(text), ": no such ", user ? "user" : "group", " in ", etc,
                                                       user ? "/passwd" : "/group", " (use ", user ? "uid:" : "gid:",
                                                       "N for one known elsewhere)"));
      }
      return absl::StrCat(user ? "uid:" : "gid:", *found);
    }
    return text;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(Quoted(text),
                   ": not an identity; want uid:N, gid:N, user:NAME, group:NAME, cn:NAME, subject:DN, dns:NAME, uri:URI, "
                   "email:ADDR, ip:ADDR, or one of *, unix:*, cert:*, tls:anonymous, tcp:insecure"));
}

absl::StatusOr<std::optional<std::set<std::string>>> StringSet(const YAML::Node& n, const std::string& where) {
  if (!n) return std::optional<std::set<std::string>>();
  if (!n.IsSequence()) return absl::InvalidArgumentError(absl::StrCat(where, ": want a list of names"));
  std::set<std::string> out;
  for (const YAML::Node& item : n) {
    if (!item.IsScalar() || item.Scalar().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": want a list of non-empty names"));
    }
    out.insert(item.Scalar());
  }
  return std::optional<std::set<std::string>>(std::move(out));
}

bool Allows(const std::optional<std::set<std::string>>& set, const std::string& v) {
  return !set.has_value() || set->count(v) > 0;
}

std::string Property(const grpc::AuthContext& auth, const char* name) {
  std::vector<grpc::string_ref> v = auth.FindPropertyValues(name);
  return v.empty() ? std::string() : std::string(v[0].data(), v[0].size());
}

}  // namespace

std::vector<std::string> Caller::Identities() const {
  std::vector<std::string> out = {"*"};
  switch (transport) {
    case Transport::kUnix:
      out.push_back("unix:*");
      out.push_back(absl::StrCat("uid:", uid));
      for (uint32_t g : gids) out.push_back(absl::StrCat("gid:", g));
      break;
    case Transport::kTls:
      if (!verified_cert) {
        out.push_back("tls:anonymous");
        break;
      }
      out.push_back("cert:*");
      if (!common_name.empty()) out.push_back(absl::StrCat("cn:", common_name));
      if (!subject.empty()) out.push_back(absl::StrCat("subject:", subject));
      for (const std::string& san : sans) out.push_back(san);
      break;
    case Transport::kInsecureTcp:
      out.push_back("tcp:insecure");
      break;
    case Transport::kUnknown:
      break;
  }
  return out;
}

std::string Caller::Describe() const {
  switch (transport) {
    case Transport::kUnix:
      return absl::StrCat("uid ", uid, " gid ", gids.empty() ? 0 : gids[0], " (pid ", pid, ")");
    case Transport::kTls:
      if (!verified_cert) return absl::StrCat("anonymous TLS caller ", peer);
      return absl::StrCat("certificate ", subject.empty() ? absl::StrCat("CN=", common_name) : subject,
                          sans.empty() ? "" : absl::StrCat(" (", absl::StrJoin(sans, ", "), ")"));
    case Transport::kInsecureTcp:
      return absl::StrCat("plaintext caller ", peer);
    case Transport::kUnknown:
      break;
  }
  return absl::StrCat("unidentified caller ", peer);
}

Caller CallerOf(const grpc::CallbackServerContext& ctx, bool insecure_tcp) {
  Caller c;
  c.peer = ctx.peer();
  if (std::optional<PeerCredentials> cred = PeerOfDescriptor(c.peer)) {
    c.transport = Caller::Transport::kUnix;
    c.uid = cred->uid;
    c.gids = cred->gids;
    c.pid = cred->pid;
    return c;
  }
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  const std::string security = auth ? Property(*auth, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME) : "";
  if (security == GRPC_SSL_TRANSPORT_SECURITY_TYPE || security == GRPC_TLS_TRANSPORT_SECURITY_TYPE) {
    c.transport = Caller::Transport::kTls;
    // The server verifies every client certificate it asks for (serve
    // --tls-client-ca); a certificate is present only then.
    c.verified_cert = !Property(*auth, GRPC_X509_PEM_CERT_PROPERTY_NAME).empty();
    if (c.verified_cert) {
      c.subject = Property(*auth, GRPC_X509_SUBJECT_PROPERTY_NAME);
      c.common_name = Property(*auth, GRPC_X509_CN_PROPERTY_NAME);
      for (auto [prop, prefix] : {std::pair{GRPC_PEER_DNS_PROPERTY_NAME, "dns:"},
                                  {GRPC_PEER_URI_PROPERTY_NAME, "uri:"},
                                  {GRPC_PEER_EMAIL_PROPERTY_NAME, "email:"},
                                  {GRPC_PEER_IP_PROPERTY_NAME, "ip:"}}) {
        for (const grpc::string_ref& v : auth->FindPropertyValues(prop)) {
          c.sans.push_back(absl::StrCat(prefix, absl::string_view(v.data(), v.size())));
        }
      }
    }
    return c;
  }
  // Plaintext TCP is only served on loopback, with --insecure-listen;
  // anything else stays unidentified (and is refused).
  if (insecure_tcp && (security.empty() || security == "insecure") &&
      (absl::StartsWith(c.peer, "ipv4:") || absl::StartsWith(c.peer, "ipv6:"))) {
    c.transport = Caller::Transport::kInsecureTcp;
  }
  return c;
}

bool Scope::Unrestricted() const {
  for (const Grant& g : grants) {
    if (!g.sources && !g.namespaces) return true;
  }
  return false;
}

absl::Status Scope::CheckWrite(const std::string& source, const std::set<std::string>& namespaces) const {
  for (const Grant& g : grants) {
    if (!Allows(g.sources, source)) continue;
    bool all = true;
    for (const std::string& ns : namespaces) all = all && Allows(g.namespaces, ns);
    if (all) return absl::OkStatus();
  }
  std::set<std::string> sources, spaces;
  for (const Grant& g : grants) {
    if (g.sources) sources.insert(g.sources->begin(), g.sources->end());
    if (g.namespaces) spaces.insert(g.namespaces->begin(), g.namespaces->end());
  }
  return absl::PermissionDeniedError(absl::StrCat(
      who, " may not write as source ", Quoted(source), " in namespace",
      namespaces.size() == 1 ? " " : "s ", absl::StrJoin(namespaces, ", "),
      " (the authorization policy lets it write as sources [", absl::StrJoin(sources, ", "), "] in namespaces [",
      absl::StrJoin(spaces, ", "), "])"));
}

absl::Status Scope::CheckRead(absl::string_view ns) const {
  for (const Grant& g : grants) {
    if (!g.namespaces || (!ns.empty() && g.namespaces->count(std::string(ns)) > 0)) return absl::OkStatus();
  }
  std::set<std::string> spaces;
  for (const Grant& g : grants) spaces.insert(g.namespaces->begin(), g.namespaces->end());
  return absl::PermissionDeniedError(
      absl::StrCat(who, " may read only namespaces [", absl::StrJoin(spaces, ", "), "]",
                   ns.empty() ? "; name one of them in the request" : absl::StrCat(", not ", Quoted(ns))));
}

absl::StatusOr<Policy> Policy::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--authz ", path, ": cannot read it"));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), absl::StrCat("--authz ", path));
}

absl::StatusOr<Policy> Policy::Parse(absl::string_view yaml, const std::string& origin, const std::string& etc) {
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", e.what()));
  }
  if (!doc.IsMap() || !doc["rules"] || !doc["rules"].IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": want a mapping with a list \"rules\""));
  }
  for (const auto& kv : doc) {
    if (kv.first.Scalar() != "rules") {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": unknown field ", Quoted(kv.first.Scalar())));
    }
  }
  Policy p;
  p.from_file_ = true;
  size_t i = 0;
  for (const YAML::Node& n : doc["rules"]) {
    const std::string where = absl::StrCat(origin, ": rules[", i++, "]");
    if (!n.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": want a mapping"));
    for (const auto& kv : n) {
      const std::string& k = kv.first.Scalar();
      if (k != "match" && k != "allow" && k != "sources" && k != "namespaces") {
        return absl::InvalidArgumentError(absl::StrCat(where, ": unknown field ", Quoted(k),
                                                       " (want match, allow, sources, namespaces)"));
      }
    }
    Rule r;
    const YAML::Node match = n["match"];
    if (!match || !match.IsSequence() || match.size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".match: want a non-empty list of identities"));
    }
    for (const YAML::Node& m : match) {
      if (!m.IsScalar()) return absl::InvalidArgumentError(absl::StrCat(where, ".match: want identities as strings"));
      absl::StatusOr<std::string> id = ResolveIdentity(m.Scalar(), etc);
      if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ".match: ", id.status().message()));
      r.match.push_back(*id);
    }
    const YAML::Node allow = n["allow"];
    if (!allow || !allow.IsScalar() || (allow.Scalar() != "read" && allow.Scalar() != "write")) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".allow: want read or write"));
    }
    r.allow = allow.Scalar() == "write" ? Access::kWrite : Access::kRead;
    for (auto [field, out] : {std::pair{"sources", &r.grant.sources}, {"namespaces", &r.grant.namespaces}}) {
      absl::StatusOr<std::optional<std::set<std::string>>> set = StringSet(n[field], absl::StrCat(where, ".", field));
      if (!set.ok()) return set.status();
      *out = std::move(*set);
    }
    p.rules_.push_back(std::move(r));
  }
  return p;
}

absl::StatusOr<Scope> Policy::Authorize(const Caller& caller, Access want) const {
  Scope scope;
  scope.who = caller.Describe();
  if (!from_file_) {
    const bool writer = caller.transport == Caller::Transport::kUnix ||
                        caller.transport == Caller::Transport::kInsecureTcp ||
                        (caller.transport == Caller::Transport::kTls && caller.verified_cert);
    const bool reader = writer || caller.transport == Caller::Transport::kTls;
    if (want == Access::kWrite ? writer : reader) {
      scope.grants.push_back(Grant{});
      return scope;
    }
    return absl::PermissionDeniedError(absl::StrCat(
        scope.who, " may not ", want == Access::kWrite ? "write" : "read",
        want == Access::kWrite ? ": writing over TLS needs a client certificate (serve --tls-client-ca), or a policy "
                                 "(serve --authz) that allows this caller"
                               : ""));
  }
  const std::vector<std::string> ids = caller.Identities();
  for (const Rule& r : rules_) {
    if (want == Access::kWrite && r.allow != Access::kWrite) continue;
    for (const std::string& m : r.match) {
      if (std::find(ids.begin(), ids.end(), m) != ids.end()) {
        scope.grants.push_back(r.grant);
        break;
      }
    }
  }
  if (scope.grants.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(scope.who, " may not ",
                                                    want == Access::kWrite ? "write" : "read",
                                                    ": no rule of the authorization policy (--authz) allows it"));
  }
  return scope;
}

std::shared_ptr<const Policy> PolicyHolder::Get() const {
  absl::MutexLock lock(&mu_);
  return policy_;
}

void PolicyHolder::Set(std::shared_ptr<const Policy> p) {
  absl::MutexLock lock(&mu_);
  policy_ = std::move(p);
}

}  // namespace nftproxy::server
