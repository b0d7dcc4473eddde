#include "server/etcd_client.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace nftproxy::server {

namespace pb = ::etcdserverpb;

std::string EtcdPrefixEnd(const std::string& prefix) {
  // The smallest key greater than every key starting with `prefix`: the
  // prefix with its last byte below 0xff incremented (and what follows it
  // dropped); "\0" (every key) when there is none.
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c < 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

absl::StatusOr<EtcdEndpoint> ParseEtcdEndpoint(const std::string& url) {
  EtcdEndpoint e;
  std::string rest;
  if (absl::StartsWith(url, "http://")) {
    rest = url.substr(7);
  } else if (absl::StartsWith(url, "https://")) {
    rest = url.substr(8);
    e.tls = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint \"", url, "\": want a URL, http://HOST:PORT or https://HOST:PORT"));
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  uint32_t port = 0;
  if (rest.empty() || rest.find('/') != std::string::npos || colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port == 0 || port > 65535 ||
      (rest.front() == '[') != (rest[colon - 1] == ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint \"", url, "\": want HOST:PORT after the scheme, with a port from 1 to 65535"));
  }
  e.address = rest;
  return e;
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f.good() && !f.eof()) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it"));
  std::string text = ss.str();
  if (text.find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a PEM file"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Connect(const EtcdOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("--etcd-endpoints: no endpoint given");
  std::vector<std::string> addresses;
  bool tls = false;
  for (size_t i = 0; i < options.endpoints.size(); ++i) {
    absl::StatusOr<EtcdEndpoint> e = ParseEtcdEndpoint(options.endpoints[i]);
    if (!e.ok()) return e.status();
    if (i > 0 && e->tls != tls) {
      return absl::InvalidArgumentError("--etcd-endpoints: mixes http:// and https:// endpoints");
    }
    tls = e->tls;
    addresses.push_back(e->address);
  }
  if (!tls && (!options.ca_file.empty() || !options.cert_file.empty() || !options.key_file.empty())) {
    return absl::InvalidArgumentError("--etcd-ca/--etcd-cert/--etcd-key need https:// endpoints");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--etcd-cert and --etcd-key go together");
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadPem(options.ca_file, "--etcd-ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadPem(options.cert_file, "--etcd-cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadPem(options.key_file, "--etcd-key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  // One channel over every member: gRPC's static address list ("ipv4:" /
  // "ipv6:" need numeric addresses; names go through the default resolver
  // one endpoint at a time, so a cluster given by names uses the first).
  bool numeric = true;
  for (const std::string& a : addresses) {
    const std::string host = a.substr(0, a.rfind(':'));
    if (host.front() != '[' && host.find_first_not_of("0123456789.") != std::string::npos) numeric = false;
  }
  std::string target;
  if (numeric) {
    target = absl::StrCat(addresses.front().front() == '[' ? "ipv6:" : "ipv4:", absl::StrJoin(addresses, ","));
    for (const std::string& a : addresses) {
      if ((a.front() == '[') != (addresses.front().front() == '[')) {
        return absl::InvalidArgumentError("--etcd-endpoints: mixes IPv4 and IPv6 addresses");
      }
    }
  } else {
    target = addresses.front();
  }
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("pick_first");
  // Reconnect soon after a member comes back (the default backs off to 2 min).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, creds, args);
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(std::move(channel), absl::StrJoin(options.endpoints, ","), options.timeout));
}

EtcdClient::EtcdClient(std::shared_ptr<grpc::Channel> channel, std::string endpoints_text, absl::Duration timeout)
    : channel_(std::move(channel)),
      kv_(pb::KV::NewStub(channel_)),
      watch_(pb::Watch::NewStub(channel_)),
      endpoints_text_(std::move(endpoints_text)),
      timeout_(timeout) {}

absl::Status EtcdClient::WaitConnected(absl::Duration timeout) {
  if (channel_->WaitForConnected(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout))) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("etcd (", endpoints_text_, ") not reachable within ", absl::FormatDuration(timeout)));
}

absl::Status EtcdClient::Error(const grpc::Status& s, const char* what) const {
  absl::Status out = FromGrpcStatus(s);
  return absl::Status(out.code(), absl::StrCat("etcd (", endpoints_text_, ") ", what, ": ", s.error_message()));
}

namespace {

void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

EtcdKeyValue FromPb(const mvccpb::KeyValue& kv) {
  return EtcdKeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()};
}

}  // namespace

template <typename Req, typename Resp>
absl::Status EtcdClient::Unary(grpc::Status (pb::KV::Stub::*call)(grpc::ClientContext*, const Req&, Resp*),
                               const Req& req, Resp* resp, const char* what) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout_);
  grpc::Status s = (kv_.get()->*call)(&ctx, req, resp);
  return s.ok() ? absl::OkStatus() : Error(s, what);
}

absl::StatusOr<EtcdRange> EtcdClient::Range(const std::string& key, const std::string& range_end, int64_t revision,
                                            int64_t limit) {
  pb::RangeRequest req;
  req.set_key(key);
  req.set_range_end(range_end);
  req.set_revision(revision);
  req.set_limit(limit);
  pb::RangeResponse resp;
  if (absl::Status s = Unary(&pb::KV::Stub::Range, req, &resp, "range"); !s.ok()) return s;
  EtcdRange out;
  out.kvs.reserve(resp.kvs_size());
  for (const mvccpb::KeyValue& kv : resp.kvs()) out.kvs.push_back(FromPb(kv));
  out.more = resp.more();
  out.revision = resp.header().revision();
  return out;
}

absl::StatusOr<pb::TxnResponse> EtcdClient::Txn(const pb::TxnRequest& req) {
  pb::TxnResponse resp;
  if (absl::Status s = Unary(&pb::KV::Stub::Txn, req, &resp, "transaction"); !s.ok()) return s;
  return resp;
}

absl::Status EtcdClient::Compact(int64_t revision) {
  pb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(true);
  pb::CompactionResponse resp;
  return Unary(&pb::KV::Stub::Compact, req, &resp, "compaction");
}

std::unique_ptr<EtcdWatch> EtcdClient::Watch(const std::string& prefix, int64_t start_revision, EventsFn on_events,
                                             EndFn on_end) {
  std::unique_ptr<EtcdWatch> w(new EtcdWatch());
  EtcdWatch* raw = w.get();
  w->thread_ = std::thread([this, raw, prefix, start_revision, on_events = std::move(on_events),
                            on_end = std::move(on_end)] {
    std::unique_ptr<grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>> stream =
        watch_->Watch(&raw->context_);
    pb::WatchRequest req;
    pb::WatchCreateRequest* create = req.mutable_create_request();
    create->set_key(prefix);
    create->set_range_end(EtcdPrefixEnd(prefix));
    create->set_start_revision(start_revision);
    create->set_progress_notify(true);
    absl::Status ended;
    if (stream->Write(req)) {
      pb::WatchResponse resp;
      while (ended.ok() && stream->Read(&resp)) {
        if (resp.compact_revision() > 0) {
          ended = absl::OutOfRangeError(absl::StrCat(
              "etcd (", endpoints_text_, ") compacted its history past revision ", start_revision,
              " (it keeps revisions after ", resp.compact_revision(), " only): read the state again"));
        } else if (resp.canceled()) {
          ended = absl::UnavailableError(
              absl::StrCat("etcd (", endpoints_text_, ") ended the watch: ", resp.cancel_reason()));
        } else if (!resp.created() || resp.events_size() > 0) {
          std::vector<WatchEvent> events;
          events.reserve(resp.events_size());
          for (const mvccpb::Event& e : resp.events()) {
            events.push_back(WatchEvent{e.type() == mvccpb::Event::PUT, FromPb(e.kv())});
          }
          on_events(events, resp.header().revision());
        }
      }
    }
    if (ended.ok()) {
      raw->context_.TryCancel();
      grpc::Status s = stream->Finish();
      ended = s.error_code() == grpc::StatusCode::CANCELLED
                  ? absl::CancelledError("watch cancelled")
                  : (s.ok() ? absl::UnavailableError(absl::StrCat("etcd (", endpoints_text_, ") ended the watch"))
                            : Error(s, "watch"));
    } else {
      raw->context_.TryCancel();
      stream->Finish();
    }
    on_end(ended);
  });
  return w;
}

EtcdWatch::~EtcdWatch() { Cancel(); }

void EtcdWatch::Cancel() {
  context_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

}  // namespace nftproxy::server
