#include "server/http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace nftproxy::server {

namespace {

bool TokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!TokenChar(c)) return false;
  }
  return true;
}

// Visible ASCII and bytes above it (obs-text), no controls.
bool TargetChar(char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; }

}  // namespace

const char* HttpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
  }
  return "Unknown";
}

std::string SerializeResponse(const HttpResponse& r, bool head) {
  std::string out = absl::StrCat("HTTP/1.1 ", r.status, " ", HttpReason(r.status), "\r\nContent-Type: ",
                                 r.content_type, "\r\nContent-Length: ", r.body.size(), "\r\nConnection: close\r\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  out += "\r\n";
  if (!head) out += r.body;
  return out;
}

HttpRequestParser::State HttpRequestParser::Fail(int status, std::string why) {
  state_ = State::kError;
  error_status_ = status;
  error_ = std::move(why);
  pending_.clear();
  return state_;
}

HttpRequestParser::State HttpRequestParser::Feed(absl::string_view bytes) {
  while (state_ == State::kIncomplete && !bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const size_t take = nl == absl::string_view::npos ? bytes.size() : nl + 1;
    if (consumed_ + take > max_head_bytes_) {
      return Fail(have_request_line_ ? 431 : 414,
                  absl::StrCat("the request's head is longer than ", max_head_bytes_, " bytes"));
    }
    consumed_ += take;
    pending_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (nl == absl::string_view::npos) break;
    absl::string_view line(pending_);
    line.remove_suffix(1);  // \n
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string copy(line);
    pending_.clear();
    Line(copy);
  }
  return state_;
}

HttpRequestParser::State HttpRequestParser::Line(absl::string_view line) {
  for (char c : line) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
      return Fail(400, "a control character in the request's head");
    }
  }
  if (!have_request_line_) {
    if (line.empty()) return state_;  // empty lines before the request line are allowed
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == absl::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == absl::string_view::npos || line.find(' ', sp2 + 1) != absl::string_view::npos) {
      return Fail(400, "the request line is not METHOD TARGET VERSION");
    }
    const absl::string_view method = line.substr(0, sp1);
    const absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const absl::string_view version = line.substr(sp2 + 1);
    if (!IsToken(method)) return Fail(400, "the method is not a token");
    if (target.empty() || target[0] != '/') return Fail(400, "the target is not a path");
    for (char c : target) {
      if (!TargetChar(c)) return Fail(400, "the target has a character it may not have");
    }
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !absl::ascii_isdigit(version[5]) ||
        version[6] != '.' || !absl::ascii_isdigit(version[7])) {
      return Fail(400, "the version is not HTTP/x.y");
    }
    if (version[5] != '1') return Fail(505, "only HTTP/1.x is served");
    request_.method = std::string(method);
    request_.target = std::string(target);
    request_.path = std::string(target.substr(0, target.find('?')));
    request_.minor_version = version[7] - '0';
    have_request_line_ = true;
    return state_;
  }
  if (line.empty()) {
    state_ = State::kComplete;
    return state_;
  }
  if (line[0] == ' ' || line[0] == '\t') return Fail(400, "folded header lines are not accepted");
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
    return Fail(400, "a header line is not NAME: VALUE");
  }
  return state_;
}

// ---- the server -------------------------------------------------------------

absl::StatusOr<int> ListenSocket(const std::string& host, int port) { return BoundSocket(host, port, SOCK_STREAM); }

absl::StatusOr<int> BoundSocket(const std::string& host, int port, int socktype) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = absl::StrCat(port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(host, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string err = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && (socktype != SOCK_STREAM || listen(fd, 128) == 0)) break;
    err = strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port, ": ", err));
  return fd;
}

absl::StatusOr<int> ListenAnySocket(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    const int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    sockaddr_in6 a = {};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && listen(fd, 128) == 0) return fd;
    const int err = errno;
    close(fd);
    // Only a missing IPv6 falls back to IPv4; a port in use is an error.
    if (err != EADDRNOTAVAIL && err != EAFNOSUPPORT) {
      return absl::UnavailableError(absl::StrCat("cannot listen on [::]:", port, ": ", strerror(err)));
    }
  }
  return ListenSocket("0.0.0.0", port);
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  return std::unique_ptr<HttpServer>(new HttpServer(wake, 0, options));
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Listen(const std::string& host, int port, Handler handler,
                                                               HttpServerOptions options) {
  absl::StatusOr<int> fd = ListenSocket(host, port);
  if (!fd.ok()) return fd.status();
  sockaddr_storage bound = {};
  socklen_t len = sizeof(bound);
  getsockname(*fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) {
    close(*fd);
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  std::unique_ptr<HttpServer> server(new HttpServer(wake, bound_port, options));
  server->AddListener(*fd, std::move(handler));
  return server;
}

HttpServer::HttpServer(int wake_fd, int port, HttpServerOptions options)
    : wake_fd_(wake_fd), port_(port), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

void HttpServer::Wake() {
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // The counter is saturated: the loop wakes anyway.
  }
}

void HttpServer::AddListener(int fd, Handler handler) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(Listener{fd, std::make_shared<const Handler>(std::move(handler))});
  ++generation_;
  Wake();
}

void HttpServer::RemoveListener(int fd) {
  absl::MutexLock lock(&mu_);
  const auto it = std::find_if(listeners_.begin(), listeners_.end(), [fd](const Listener& l) { return l.fd == fd; });
  if (it == listeners_.end()) return;
  listeners_.erase(it);
  to_close_.push_back(fd);
  const uint64_t want = ++generation_;
  Wake();
  // The loop closes it when it next takes the list (it never polls a
  // socket after that), so the port is free when this returns.
  auto done = [this, want]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_generation_ >= want || stop_; };
  mu_.Await(absl::Condition(&done));
}

HttpServer::~HttpServer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  Wake();
  thread_.join();
  absl::MutexLock lock(&mu_);
  for (const Listener& l : listeners_) close(l.fd);
  for (int fd : to_close_) close(fd);
  close(wake_fd_);
}

void HttpServer::Loop() {
  struct Conn {
    int fd;
    absl::Time deadline;
    HttpRequestParser parser;
    std::shared_ptr<const Handler> handler;  // its listener's
    std::string out;  // the answer, once the request is read
    size_t sent = 0;
  };
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<pollfd> fds;
  // Out of file descriptors: accepting pauses for a moment instead of
  // spinning on a listening socket that stays readable.
  absl::Time accept_paused_until = absl::InfinitePast();
  char buf[4096];
  auto answer = [&](Conn& c, const HttpResponse& r, bool head) {
    c.out = SerializeResponse(r, head);
    c.sent = 0;
    c.deadline = absl::Now() + options_.timeout;
    shutdown(c.fd, SHUT_RD);
  };
  std::vector<Listener> listeners;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      if (seen_generation_ != generation_) {
        listeners = listeners_;
        for (int fd : to_close_) close(fd);
        to_close_.clear();
        seen_generation_ = generation_;
      }
    }
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    const bool accepting = absl::Now() >= accept_paused_until;
    for (const Listener& l : listeners) fds.push_back({l.fd, static_cast<short>(accepting ? POLLIN : 0), 0});
    const size_t first_conn = 1 + listeners.size();
    absl::Time next = accepting ? absl::InfiniteFuture() : accept_paused_until;
    for (const auto& c : conns) {
      fds.push_back({c->fd, static_cast<short>(c->out.empty() ? POLLIN : POLLOUT), 0});
      next = std::min(next, c->deadline);
    }
    int wait_ms = -1;
    if (next != absl::InfiniteFuture()) {
      wait_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    }
    const int n = poll(fds.data(), fds.size(), wait_ms);
    if (n < 0 && errno != EINTR) {
      log::Error("the HTTP server stopped", {{"error", strerror(errno)}});
      break;
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      if (read(wake_fd_, &count, sizeof(count)) < 0) {
        // Nothing to read: another wake took it.
      }
      continue;  // the list or stop_ changed
    }
    const absl::Time now = absl::Now();
    // Connections first (fds[first_conn..] match conns as they were when polled).
    std::vector<std::unique_ptr<Conn>> keep;
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = *conns[i];
      const short rev = n > 0 ? fds[first_conn + i].revents : 0;
      bool done = false;
      if (c.out.empty() && (rev & (POLLIN | POLLHUP | POLLERR))) {
        const ssize_t got = recv(c.fd, buf, sizeof(buf), 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          done = true;  // the client went away before asking anything
        } else if (got > 0) {
          switch (c.parser.Feed(absl::string_view(buf, static_cast<size_t>(got)))) {
            case HttpRequestParser::State::kIncomplete:
              break;
            case HttpRequestParser::State::kError: {
              HttpResponse r;
              r.status = c.parser.error_status();
              r.body = c.parser.error() + "\n";
              answer(c, r, false);
              break;
            }
            case HttpRequestParser::State::kComplete: {
              const HttpRequest& req = c.parser.request();
              const bool head = req.method == "HEAD";
              if (req.method != "GET" && !head) {
                HttpResponse r;
                r.status = 405;
                r.headers.emplace_back("Allow", "GET, HEAD");
                r.body = "only GET and HEAD are served\n";
                answer(c, r, false);
              } else {
                answer(c, (*c.handler)(req), head);
              }
              break;
            }
          }
        }
      } else if (!c.out.empty() && (rev & (POLLOUT | POLLHUP | POLLERR))) {
        const ssize_t put = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put > 0) c.sent += static_cast<size_t>(put);
        if (put < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) done = true;
        if (c.sent == c.out.size()) done = true;
      }
      if (!done && now >= c.deadline) {
        if (c.out.empty()) {
          ++timed_out_;
          const std::string r = SerializeResponse(HttpResponse{408, "text/plain; charset=utf-8", {}, "too slow\n"},
                                                  false);
          send(c.fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);  // best effort
        }
        done = true;
      }
      if (done) {
        close(c.fd);
      } else {
        keep.push_back(std::move(conns[i]));
      }
    }
    conns = std::move(keep);
    for (size_t li = 0; li < listeners.size(); ++li) {
      if (!(fds[1 + li].revents & POLLIN)) continue;
      // Take every waiting connection; beyond the limit they are closed at once.
      for (;;) {
        const int fd = accept4(listeners[li].fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            accept_paused_until = absl::Now() + absl::Milliseconds(100);
          }
          break;
        }
        if (conns.size() >= options_.max_connections) {
          ++refused_;
          close(fd);
          continue;
        }
        conns.push_back(std::unique_ptr<Conn>(
            new Conn{fd, absl::Now() + options_.timeout, HttpRequestParser(options_.max_head_bytes),
                     listeners[li].handler, {}, 0}));
      }
    }
  }
  for (const auto& c : conns) close(c->fd);
}

}  // namespace nftproxy::server
