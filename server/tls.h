// TLS for the server's TCP listeners: the certificate, its key and (for
// mutual TLS) the CA that signs client certificates, checked at start (a
// missing file, a key that does not belong to the certificate, or a file that
// holds no PEM certificate stops the start with a message naming the flag)
// and then re-read by gRPC whenever they change, without dropping
// connections: a rotated certificate is served to new connections within
// `reload_interval`.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nftproxy::server {

struct TlsFiles {
  std::string cert;       // --tls-cert: PEM certificate chain, the server's first
  std::string key;        // --tls-key: its PEM private key
  std::string client_ca;  // --tls-client-ca: PEM CAs; set: clients must present a certificate they signed
  absl::Duration reload_interval = absl::Seconds(5);
};

// Checks the files now (so that a mistake stops the start) and returns the
// credentials that keep watching them.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const TlsFiles& files);

}  // namespace nftproxy::server
