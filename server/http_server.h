// A small HTTP/1.1 server for the metrics and health endpoints (serve
// --metrics-address) and the health-check node ports (server/health_ports):
// any number of listening sockets, each with its own handler, added and
// removed while it runs; GET and HEAD only, one request per connection
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
#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
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

// A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) on
// host:port (a name or an address; port 0 picks one). UNAVAILABLE naming the
// address and errno's text when it cannot be bound (EADDRINUSE and the like).
absl::StatusOr<int> ListenSocket(const std::string& host, int port);
// The same for any socket type (SOCK_STREAM listens; SOCK_DGRAM is bound).
absl::StatusOr<int> BoundSocket(const std::string& host, int port, int socktype);
// The same on the wildcard address of every family: [::] accepting IPv4 too,
// or 0.0.0.0 where IPv6 is off. `host` empty; otherwise as ListenSocket.
absl::StatusOr<int> ListenAnySocket(int port);

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Binds host:port (a name or an address; port 0 picks one) and serves on
  // a thread of its own until destroyed. GET and HEAD go to `handler`; other
  // methods get 405, malformed requests 400 (and the like), with no call.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(const std::string& host, int port, Handler handler,
                                                            HttpServerOptions options = {});
  // A server with no listening socket yet (see AddListener).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves the listening socket `fd` (taken over; closed by the server) with
  // `handler`, from the next poll on. max_connections counts over all sockets.
  void AddListener(int fd, Handler handler) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops accepting on `fd` and closes it before returning (its port is free
  // again); connections already accepted from it are answered by its handler.
  void RemoveListener(int fd) ABSL_LOCKS_EXCLUDED(mu_);

  // The first listening socket's port (Listen's).
  int port() const { return port_; }
  // Connections closed at once because max_connections were open.
  uint64_t refused() const { return refused_.load(); }
  // Connections closed because the request did not arrive in time.
  uint64_t timed_out() const { return timed_out_.load(); }

 private:
  struct Listener {
    int fd;
    std::shared_ptr<const Handler> handler;
  };
  HttpServer(int wake_fd, int port, HttpServerOptions options);
  void Wake();
  void Loop();

  const int wake_fd_;
  int port_ = 0;
  const HttpServerOptions options_;
  std::atomic<uint64_t> refused_{0}, timed_out_{0};
  absl::Mutex mu_;
  std::vector<Listener> listeners_ ABSL_GUARDED_BY(mu_);
  // Removed sockets the loop has yet to close.
  std::vector<int> to_close_ ABSL_GUARDED_BY(mu_);
  // Bumped by each change of listeners_; the loop copies it when it takes
  // the list (and closes to_close_).
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seen_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace nftproxy::server
