// The metrics server's request parser (server/http_server.h) and what the
// server answers: any bytes, fed whole and in pieces of a size the first
// byte picks. Must hold: the same state, request and error status either
// way; a refusal is 400, 414, 431 or 505; a request's target starts with /
// and its path is the target up to any '?'; a complete GET or HEAD gets a
// response whose Content-Length is its body's length.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/http_server.h"
#include "server/metrics.h"

namespace {

void Finding(const std::string& what) {
  fprintf(stderr, "FINDING: %s\n", what.c_str());
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nftproxy::server::HttpRequestParser;
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;
  const std::string in(reinterpret_cast<const char*>(data + 1), size - 1);
  HttpRequestParser whole(512), pieces(512);
  whole.Feed(in);
  for (size_t at = 0; at < in.size(); at += piece) pieces.Feed(in.substr(at, piece));
  if (whole.state() != pieces.state()) Finding("fed whole and in pieces, the states differ");
  if (whole.state() == HttpRequestParser::State::kError) {
    const int s = whole.error_status();
    if (s != pieces.error_status()) Finding("the error status depends on how the bytes arrived");
    if (s != 400 && s != 414 && s != 431 && s != 505) Finding(absl::StrCat("unexpected status ", s));
    return 0;
  }
  if (whole.state() != HttpRequestParser::State::kComplete) return 0;
  const nftproxy::server::HttpRequest& r = whole.request();
  if (r.method != pieces.request().method || r.target != pieces.request().target) {
    Finding("the request depends on how the bytes arrived");
  }
  if (r.target.empty() || r.target[0] != '/' || !absl::StartsWith(r.target, r.path) ||
      (r.path.size() != r.target.size() && r.target[r.path.size()] != '?') ||
      r.path.find('?') != std::string::npos) {
    Finding("target " + r.target + " and path " + r.path + " disagree");
  }
  // The server's metrics, as /metrics renders them.
  struct Metrics {
    nftproxy::server::Registry registry;
    nftproxy::server::EngineMetrics engine{&registry};
  };
  static Metrics* metrics = new Metrics;
  const nftproxy::server::HttpResponse resp =
      nftproxy::server::ServeObservability(r, metrics->registry, nftproxy::server::HealthState{}, absl::Seconds(60),
                                           absl::Now());
  const std::string wire = nftproxy::server::SerializeResponse(resp, r.method == "HEAD");
  if (!absl::StrContains(wire, absl::StrCat("\r\nContent-Length: ", resp.body.size(), "\r\n"))) {
    Finding("Content-Length is not the body's length");
  }
  return 0;
}
