#include "server/http_server.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace nftproxy::server {
namespace {

using State = HttpRequestParser::State;

TEST(HttpRequestParser, ParsesAGetWithHeaders) {
  HttpRequestParser p;
  EXPECT_EQ(p.Feed("GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:10249\r\nAccept: text/plain\r\n\r\n"),
            State::kComplete);
  EXPECT_EQ(p.request().method, "GET");
  EXPECT_EQ(p.request().target, "/metrics?x=1");
  EXPECT_EQ(p.request().path, "/metrics");
  EXPECT_EQ(p.request().minor_version, 1);
}

TEST(HttpRequestParser, TakesAnySplitAndBareLineFeeds) {
  const std::string req = "\r\nHEAD /healthz HTTP/1.0\nUser-Agent: x\n\n";
  for (size_t cut = 0; cut <= req.size(); ++cut) {
    HttpRequestParser p;
    State s = p.Feed(req.substr(0, cut));
    if (cut < req.size()) {
      EXPECT_EQ(s, State::kIncomplete) << cut;
      s = p.Feed(req.substr(cut));
    }
    ASSERT_EQ(s, State::kComplete) << cut;
    EXPECT_EQ(p.request().method, "HEAD");
    EXPECT_EQ(p.request().path, "/healthz");
    EXPECT_EQ(p.request().minor_version, 0);
  }
  // One byte at a time.
  HttpRequestParser p;
  State s = State::kIncomplete;
  for (char c : std::string("GET / HTTP/1.1\r\n\r\n")) s = p.Feed(std::string(1, c));
  EXPECT_EQ(s, State::kComplete);
}

TEST(HttpRequestParser, RefusesGarbage) {
  struct Case {
    std::string in;
    int status;
  };
  const std::vector<Case> cases = {
      {"GET\r\n\r\n", 400},
      {"GET /\r\n\r\n", 400},                          // HTTP/0.9
      {"GET  / HTTP/1.1\r\n\r\n", 400},                // two spaces
      {"GET / HTTP/1.1 x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},                 // not a token
      {"GET metrics HTTP/1.1\r\n\r\n", 400},           // not a path
      {"GET http://a/metrics HTTP/1.1\r\n\r\n", 400},  // absolute form is not served
      {"GET /a\x01 HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost\r\n\r\n", 400},         // no colon
      {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {std::string("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 26), 400},
      {"GET / HTTPS/1.1\r\n\r\n", 400},
      {"GET / HTTP/11\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 12), 400},  // a TLS hello
  };
  for (const Case& c : cases) {
    HttpRequestParser p;
    EXPECT_EQ(p.Feed(c.in), State::kError) << c.in;
    EXPECT_EQ(p.error_status(), c.status) << c.in;
    EXPECT_FALSE(p.error().empty());
    EXPECT_EQ(p.Feed("GET / HTTP/1.1\r\n\r\n"), State::kError);  // takes nothing more
  }
}

TEST(HttpRequestParser, RefusesAnOversizedHead) {
  HttpRequestParser p(100);
  EXPECT_EQ(p.Feed("GET /" + std::string(200, 'a')), State::kError);
  EXPECT_EQ(p.error_status(), 414);
  HttpRequestParser q(100);
  EXPECT_EQ(q.Feed("GET / HTTP/1.1\r\n"), State::kIncomplete);
  State s = State::kIncomplete;
  for (int i = 0; i < 20 && s == State::kIncomplete; ++i) s = q.Feed("X-Header: value\r\n");
  EXPECT_EQ(s, State::kError);
  EXPECT_EQ(q.error_status(), 431);
  // Exactly at the limit is fine.
  const std::string req = "GET / HTTP/1.1\r\n\r\n";
  HttpRequestParser r(req.size());
  EXPECT_EQ(r.Feed(req), State::kComplete);
}

TEST(HttpResponse, Serializes) {
  HttpResponse r;
  r.status = 503;
  r.content_type = "application/json";
  r.headers.emplace_back("X-A", "b");
  r.body = "{}";
  EXPECT_EQ(SerializeResponse(r, false),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: close\r\nX-A: b\r\n\r\n{}");
  EXPECT_EQ(SerializeResponse(r, true),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: close\r\nX-A: b\r\n\r\n");
}

// ---- the server on a loopback port ------------------------------------------

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends until it closes (or 10 s pass: "<hung>").
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) return out + "<hung>";
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "<no connection>";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out = ReadAll(fd);
  close(fd);
  return out;
}

class HttpServerTest : public testing::Test {
 protected:
  void Start(HttpServerOptions options = {}) {
    auto s = HttpServer::Listen("127.0.0.1", 0, [this](const HttpRequest& req) {
      ++calls_;
      HttpResponse r;
      r.body = "path=" + req.path + "\n";
      return r;
    }, options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::atomic<int> calls_{0};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, AnswersGetAndHead) {
  Start();
  ASSERT_GT(server_->port(), 0);
  EXPECT_EQ(Exchange(server_->port(), "GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\n"
            "Connection: close\r\n\r\npath=/x\n");
  EXPECT_EQ(Exchange(server_->port(), "HEAD /x HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\n"
            "Connection: close\r\n\r\n");
  EXPECT_EQ(calls_, 2);
}

TEST_F(HttpServerTest, RefusesOtherMethodsAndGarbageWithoutCallingTheHandler) {
  Start();
  std::string r = Exchange(server_->port(), "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 405 Method Not Allowed\r\n")) << r;
  EXPECT_TRUE(absl::StrContains(r, "\r\nAllow: GET, HEAD\r\n")) << r;
  r = Exchange(server_->port(), std::string("\x00\xff\x13garbage\r\n\r\n", 14));
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 400 Bad Request\r\n")) << r;
  r = Exchange(server_->port(), "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 414 ")) << r;
  EXPECT_EQ(calls_, 0);
  // Still serving.
  EXPECT_TRUE(absl::StrContains(Exchange(server_->port(), "GET /ok HTTP/1.1\r\n\r\n"), "path=/ok"));
}

TEST_F(HttpServerTest, ClosesASlowClientAndServesOthersMeanwhile) {
  HttpServerOptions options;
  options.timeout = absl::Milliseconds(300);
  Start(options);
  // Slowloris: a request that never ends.
  const int slow = Connect(server_->port());
  ASSERT_GE(slow, 0);
  const std::string part = "GET / HTTP/1.1\r\nX-A: 1\r\n";
  send(slow, part.data(), part.size(), MSG_NOSIGNAL);
  // Another client is answered while the slow one waits.
  EXPECT_TRUE(absl::StrContains(Exchange(server_->port(), "GET /fast HTTP/1.1\r\n\r\n"), "path=/fast"));
  // The slow one is cut off with 408 and closed, not served.
  const std::string r = ReadAll(slow);
  close(slow);
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 408 Request Timeout\r\n")) << r;
  EXPECT_EQ(server_->timed_out(), 1u);
  EXPECT_EQ(calls_, 1);
}

TEST_F(HttpServerTest, BoundsConnections) {
  HttpServerOptions options;
  options.max_connections = 2;
  Start(options);
  const int a = Connect(server_->port()), b = Connect(server_->port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // Let the server accept both before the third arrives.
  for (int i = 0; i < 100 && server_->refused() == 0; ++i) {
    const std::string r = Exchange(server_->port(), "GET / HTTP/1.1\r\n\r\n");
    if (r.empty()) break;  // refused: closed without an answer
    usleep(10000);
  }
  EXPECT_GE(server_->refused(), 1u);
  close(a);
  close(b);
  // Once they are gone, others are served again.
  std::string r;
  for (int i = 0; i < 100; ++i) {
    r = Exchange(server_->port(), "GET /again HTTP/1.1\r\n\r\n");
    if (absl::StrContains(r, "path=/again")) break;
    usleep(10000);
  }
  EXPECT_TRUE(absl::StrContains(r, "path=/again")) << r;
}

TEST(HttpServer, RefusesAnAddressItCannotBind) {
  auto a = HttpServer::Listen("127.0.0.1", 0, [](const HttpRequest&) { return HttpResponse{}; });
  ASSERT_TRUE(a.ok());
  auto b = HttpServer::Listen("127.0.0.1", (*a)->port(), [](const HttpRequest&) { return HttpResponse{}; });
  EXPECT_FALSE(b.ok());
  EXPECT_FALSE(HttpServer::Listen("no-such-host.invalid", 1, [](const HttpRequest&) { return HttpResponse{}; }).ok());
}

}  // namespace
}  // namespace nftproxy::server
