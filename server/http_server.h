// A small HTTP/1.1 server for the metrics and health endpoints (serve
// --metrics-address): GET and HEAD only, one request per connection
// (Connection: close), bounded everywhere a client could grow something:
// connections at once, the size of a request's head, the time to send it
// and to read the answer. One thread polls every connection; the handler
// runs on it and must be quick (it never waits for the write engine).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace nftproxy::server {

struct HttpRequest {
  std::string method;  // as sent: a token, e.g. GET
  std::string target;  // as sent, origin form: /path?query
  std::string path;    // target without the query
  int minor_version = 1;  // HTTP/1.x
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // besides the fixed ones
  std::string body;
};

// "Not Found" for 404 and so on; "Unknown" for a code it does not know.
const char* HttpReason(int status);
// The response on the wire: status line, Content-Type, Content-Length,
// Connection: close, the extra headers, and the body unless `head`.
std::string SerializeResponse(const HttpResponse& r, bool head);

// Reads a request's head (request line and header fields) fed in pieces of
// any size. A request line is METHOD SP /target SP HTTP/1.x; lines end in
// CRLF or LF; empty lines before the request line are skipped. Header
// fields are checked for form and otherwise ignored (a body is not read:
// the connection is closed after the answer).
class HttpRequestParser {
 public:
  enum class State { kIncomplete, kComplete, kError };
  explicit HttpRequestParser(size_t max_head_bytes = 8192) : max_head_bytes_(max_head_bytes) {}
  // Takes more bytes; once complete or in error, takes no more.
  State Feed(absl::string_view bytes);
  State state() const { return state_; }
  const HttpRequest& request() const { return request_; }
  // On kError: the status to answer (400, 414, 431, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error() const { return error_; }

 private:
  State Fail(int status, std::string why);
  // One line without its line end.
  State Line(absl::string_view line);

  const size_t max_head_bytes_;
  State state_ = State::kIncomplete;
  std::string pending_;  // a line not yet ended
  size_t consumed_ = 0;  // bytes of the head taken so far
  bool have_request_line_ = false;
  HttpRequest request_;
  int error_status_ = 0;
  std::string error_;
};

struct HttpServerOptions {
  size_t max_connections = 64;
  size_t max_head_bytes = 8192;
  // From accepting a connection to having its whole request; then as long
  // again to send the answer.
  absl::Duration timeout = absl::Seconds(5);
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Binds host:port (a name or an address; port 0 picks one) and serves on
  // a thread of its own until destroyed. GET and HEAD go to `handler`; other
  // methods get 405, malformed requests 400 (and the like), with no call.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(const std::string& host, int port, Handler handler,
                                                            HttpServerOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Connections closed at once because max_connections were open.
  uint64_t refused() const { return refused_.load(); }
  // Connections closed because the request did not arrive in time.
  uint64_t timed_out() const { return timed_out_.load(); }

 private:
  HttpServer(int fd, int wake_fd, int port, Handler handler, HttpServerOptions options);
  void Loop();

  const int listen_fd_;
  const int wake_fd_;
  const int port_;
  const Handler handler_;
  const HttpServerOptions options_;
  std::atomic<uint64_t> refused_{0}, timed_out_{0};
  std::thread thread_;
};

}  // namespace nftproxy::server
