#include "client/rpc.h"

#include <iostream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "common/errors.h"
#include "common/resource.h"

namespace nftproxy::client {

std::string ChannelTarget(const std::string& server) {
  if (absl::StartsWith(server, "unix://")) return "unix:" + server.substr(7);
  if (absl::StartsWith(server, "tcp://")) return server.substr(6);
  return server;
}

std::unique_ptr<v1::Proxy::Stub> Connect(const std::string& server) {
  return v1::Proxy::NewStub(grpc::CreateChannel(ChannelTarget(server), grpc::InsecureChannelCredentials()));
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
    if (KeyOf(d.resource) == key) return absl::StrCat(d.file, ": document ", d.index, ": ", s.message());
  }
  return std::string(s.message());
}

int Report(const absl::Status& s, const std::string& server, const std::vector<ManifestDoc>& docs) {
  const int code = ExitCodeFor(s.code());
  if (code == kExitUnreachable) {
    std::cerr << "error: cannot reach the nftproxy server at " << server << ": " << s.message() << "\n";
  } else {
    std::cerr << "error: " << Locate(s, docs) << "\n";
  }
  return code;
}

}  // namespace nftproxy::client
