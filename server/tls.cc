#include "server/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"

namespace nftproxy::server {

namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<std::unique_ptr<FILE, FileCloser>> Open(const char* flag, const std::string& path) {
  std::unique_ptr<FILE, FileCloser> f(fopen(path.c_str(), "r"));
  if (!f) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it: ", strerror(errno)));
  return f;
}

absl::StatusOr<X509*> ReadCert(const char* flag, const std::string& path) {
  auto f = Open(flag, path);
  if (!f.ok()) return f.status();
  X509* cert = PEM_read_X509(f->get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM certificate (", OpenSslError(), ")"));
  }
  return cert;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both");
  }
  absl::StatusOr<X509*> cert = ReadCert("--tls-cert", files.cert);
  if (!cert.ok()) return cert.status();
  std::unique_ptr<X509, decltype(&X509_free)> cert_owner(*cert, X509_free);
  {
    auto f = Open("--tls-key", files.key);
    if (!f.ok()) return f.status();
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(PEM_read_PrivateKey(f->get(), nullptr, nullptr, nullptr),
                                                            EVP_PKEY_free);
    if (!key) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-key ", files.key, ": not a PEM private key (", OpenSslError(), ")"));
    }
    if (X509_check_private_key(*cert, key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat("--tls-key ", files.key, " does not belong to the certificate in --tls-cert ",
                                                     files.cert));
    }
  }
  if (!files.client_ca.empty()) {
    absl::StatusOr<X509*> ca = ReadCert("--tls-client-ca", files.client_ca);
    if (!ca.ok()) return ca.status();
    X509_free(*ca);
  }
  const unsigned interval =
      static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(files.reload_interval)));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key, files.cert,
                                                                                        files.client_ca, interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (files.client_ca.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace nftproxy::server
