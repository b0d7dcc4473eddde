#include "client/rpc.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <tuple>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "common/errors.h"
#include "common/resource.h"

namespace nftproxy::client {

absl::StatusOr<absl::Duration> ParseRequestTimeout(absl::string_view text) {
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  int64_t seconds = 0;
  absl::Duration d;
  if (absl::SimpleAtoi(t, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (t.empty() || !absl::ParseDuration(t, &d)) {
    return absl::InvalidArgumentError(absl::StrCat("--request-timeout: \"", text,
                                                   "\" is not a duration (e.g. 0 for none, 5s, 1m30s, 250ms)"));
  }
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--request-timeout: \"", text, "\" must be 0 or more"));
  }
  return d;
}

std::string ChannelTarget(const std::string& server) {
  absl::StatusOr<Address> a = ParseAddress(server);
  return a.ok() ? a->GrpcTarget() : server;
}

std::shared_ptr<grpc::Channel> NewChannel(const Address& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(address.GrpcTarget(), grpc::InsecureChannelCredentials(), args);
}

void TlsOptions::FromEnvironment() {
  for (auto [value, name] : {std::pair{&ca, "NFTPROXY_TLS_CA"},
                             {&cert, "NFTPROXY_TLS_CERT"},
                             {&key, "NFTPROXY_TLS_KEY"},
                             {&server_name, "NFTPROXY_TLS_SERVER_NAME"}}) {
    if (const char* env = getenv(name); value->empty() && env != nullptr) *value = env;
  }
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const Address& address, const TlsOptions& tls) {
  if (!tls.enabled()) return NewChannel(address);
  if (address.kind != Address::Kind::kTcp) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-*: TLS is for tcp:// servers, not ", address.ToString()));
  }
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both (or neither)");
  }
  grpc::SslCredentialsOptions ssl;
  for (auto [flag, path, out] : {std::tuple{"--tls-ca", &tls.ca, &ssl.pem_root_certs},
                                 {"--tls-cert", &tls.cert, &ssl.pem_cert_chain},
                                 {"--tls-key", &tls.key, &ssl.pem_private_key}}) {
    if (path->empty()) continue;
    std::ifstream in(*path);
    std::stringstream text;
    if (in) text << in.rdbuf();
    if (!in || text.str().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " ", *path, ": cannot read it"));
    }
    *out = text.str();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(-1);
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  return grpc::CreateCustomChannel(address.GrpcTarget(), grpc::SslCredentials(ssl), args);
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) {
  if (timeout > absl::ZeroDuration()) ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::Status WaitConnected(grpc::Channel* channel, v1::Proxy::Stub* stub, absl::Duration timeout) {
  const gpr_timespec deadline =
      timeout > absl::ZeroDuration()
          ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN))
          : gpr_inf_future(GPR_CLOCK_REALTIME);
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      // The channel knows why the attempt failed but tells only a call: one
      // that does not wait for the connection fails at once with the reason.
      grpc::ClientContext ctx;
      SetDeadline(&ctx, absl::Seconds(1));
      v1::StatusResponse ignored;
      absl::Status s = FromGrpcStatus(stub->Status(&ctx, v1::StatusRequest(), &ignored));
      if (s.ok() || !absl::IsUnavailable(s)) return absl::OkStatus();  // it came up meanwhile
      return s;
    }
    if (!channel->WaitForStateChange(state, deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("no connection within ", absl::FormatDuration(timeout), " (--request-timeout)"));
    }
    state = channel->GetState(true);
  }
  return absl::OkStatus();
}

absl::Status ListPages(v1::Proxy::Stub* stub, v1::ListRequest req, absl::Duration timeout,
                       const std::function<absl::Status(const v1::ListResponse&)>& page) {
  while (true) {
    v1::ListResponse resp;
    absl::Status s = Call(stub, &v1::Proxy::Stub::List, req, &resp, timeout);
    if (!s.ok()) return s;
    s = page(resp);
    if (!s.ok()) return s;
    if (resp.next_page_token().empty()) return absl::OkStatus();
    req.set_page_token(resp.next_page_token());
  }
}

int ExitCodeFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnreachable;
    case absl::StatusCode::kInvalidArgument:
      return kExitBadInput;
    default:
      return kExitRefused;
  }
}

std::string Locate(const absl::Status& s, const std::vector<ManifestDoc>& docs) {
  const std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s);
  if (!detail || !detail->has_resource()) return std::string(s.message());
  const Key key = KeyOf(detail->resource());
  for (const ManifestDoc& d : docs) {
    if (KeyOf(d.resource) == key) return absl::StrCat(DocumentPlace(d), ": ", s.message());
  }
  return std::string(s.message());
}

int Report(const absl::Status& s, const std::string& server, const std::vector<ManifestDoc>& docs) {
  int code = ExitCodeFor(s.code());
  // UNAVAILABLE with an ErrorDetail is the server's answer (its store, e.g.
  // etcd, cannot be reached), not a server that cannot be reached.
  if (code == kExitUnreachable && ErrorDetailOf(s).has_value()) code = kExitRefused;
  if (code == kExitUnreachable) {
    std::cerr << "error: cannot reach the nftproxy server at " << server << ": " << s.message() << "\n";
  } else {
    std::cerr << "error: " << Locate(s, docs) << "\n";
  }
  return code;
}

}  // namespace nftproxy::client
