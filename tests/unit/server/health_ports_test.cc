// Health-check node ports: local endpoint counts, the answer, the listener
// changes a write makes, and real listeners on loopback.
#include "server/health_ports.h"

#include <arpa/inet.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "common/errors.h"

namespace nftproxy::server {
namespace {

v1::Resource Parse(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

Desired DesiredOf(const std::vector<std::string>& texts) {
  State st;
  for (const std::string& t : texts) {
    v1::Resource r = Parse(t);
    st.objects[KeyOf(r)] = r;
  }
  return Desired(std::move(st));
}

const char kLb[] = R"(service { metadata { namespace: "default" name: "web" } spec { type: LOAD_BALANCER
    cluster_ips: "198.19.0.10" external_traffic_policy: LOCAL health_check_node_port: 32000
    ports { port: 80 node_port: 30080 } } })";

TEST(HealthPortOf, CountsReadyEndpointsOnThisNode) {
  Desired d = DesiredOf({kLb, R"(endpoint_slice { metadata { namespace: "default" name: "web-1" } service_name: "web"
      endpoints { addresses: "198.18.0.1" node_name: "n1" }
      endpoints { addresses: "198.18.0.2" node_name: "n1" conditions { ready: false } }
      endpoints { addresses: "198.18.0.3" node_name: "n2" } })",
                         R"(endpoint_slice { metadata { namespace: "default" name: "web-2" } service_name: "web"
      endpoints { addresses: "198.18.0.4" node_name: "n1" conditions { ready: true } }
      endpoints { addresses: "198.18.0.1" node_name: "n1" } })"});
  auto p = HealthPortOf(d, "default", "web", "n1");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->port, 32000);
  EXPECT_EQ(p->local_endpoints, 2);  // .1 (in two slices, once) and .4
  EXPECT_EQ(HealthPortOf(d, "default", "web", "n2")->local_endpoints, 1);
  EXPECT_EQ(HealthPortOf(d, "default", "web", "n3")->local_endpoints, 0);
  EXPECT_FALSE(HealthPortOf(d, "default", "nope", "n1").has_value());
}

TEST(HealthPortOf, NoneWithoutLocalPolicyOrPort) {
  std::string cluster = kLb;
  cluster.replace(cluster.find("external_traffic_policy: LOCAL"), 30, "");
  EXPECT_FALSE(HealthPortOf(DesiredOf({cluster}), "default", "web", "n1").has_value());
  std::string no_port = kLb;
  no_port.replace(no_port.find("health_check_node_port: 32000"), 29, "");
  EXPECT_FALSE(HealthPortOf(DesiredOf({no_port}), "default", "web", "n1").has_value());
}

TEST(HealthPortOf, CountsSelectedWorkloads) {
  std::string sel = kLb;
  sel.replace(sel.find("ports {"), 0, "selector { key: \"app\" value: \"web\" } ");
  Desired d = DesiredOf({sel,
                         R"(workload { metadata { name: "w1" labels { key: "app" value: "web" } } addresses: "198.18.0.1" node_name: "n1" })",
                         R"(workload { metadata { name: "w2" labels { key: "app" value: "db" } } addresses: "198.18.0.2" node_name: "n1" })"});
  EXPECT_EQ(HealthPortOf(d, "default", "web", "n1")->local_endpoints, 1);
}

TEST(HealthPortResponse, IsKubeProxysAnswer) {
  HealthPort p{"default", "web", 32000, 1};
  HttpResponse r = HealthPortResponse(p, true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body,
            "{\"service\": {\"namespace\": \"default\", \"name\": \"web\"}, \"localEndpoints\": 1, "
            "\"serviceProxyHealthy\": true}\n");
  EXPECT_EQ(HealthPortResponse(p, false).status, 503);  // endpoints, but the proxy is not healthy
  p.local_endpoints = 0;
  r = HealthPortResponse(p, true);
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("\"localEndpoints\": 0"), std::string::npos);
}

TEST(PlanHealthPorts, OpensAndClosesWhatChanged) {
  std::map<uint16_t, HealthPort> current = {{32000, {"default", "a", 32000, 1}}, {32001, {"default", "b", 32001, 0}}};
  // b moves to 32002, c comes with 32003, a's count changes, d goes (it had none).
  HealthPortChanges changes = {{{"default", "a"}, HealthPort{"default", "a", 32000, 2}},
                               {{"default", "b"}, HealthPort{"default", "b", 32002, 0}},
                               {{"default", "c"}, HealthPort{"default", "c", 32003, 1}},
                               {{"default", "d"}, std::nullopt}};
  HealthPortPlan plan = PlanHealthPorts(current, changes, false);
  EXPECT_EQ(plan.open, (std::vector<uint16_t>{32002, 32003}));
  EXPECT_EQ(plan.close, (std::vector<uint16_t>{32001}));
  ASSERT_EQ(plan.next.size(), 3u);
  EXPECT_EQ(plan.next[32000].local_endpoints, 2);
  // A write that does not name a service keeps its port.
  plan = PlanHealthPorts(current, {{{"default", "a"}, std::nullopt}}, false);
  EXPECT_TRUE(plan.open.empty());
  EXPECT_EQ(plan.close, (std::vector<uint16_t>{32000}));
  EXPECT_EQ(plan.next.count(32001), 1u);
  // Two services swap ports: nothing opens or closes.
  plan = PlanHealthPorts(current, {{{"default", "a"}, HealthPort{"default", "a", 32001, 1}},
                                   {{"default", "b"}, HealthPort{"default", "b", 32000, 0}}},
                         false);
  EXPECT_TRUE(plan.open.empty() && plan.close.empty());
  EXPECT_EQ(plan.next[32000].name, "b");
  // The whole set (first commit): a service not named has no port.
  plan = PlanHealthPorts(current, {{{"default", "c"}, HealthPort{"default", "c", 32003, 1}}}, true);
  EXPECT_EQ(plan.open, (std::vector<uint16_t>{32003}));
  EXPECT_EQ(plan.close, (std::vector<uint16_t>{32000, 32001}));
}

// ---- real listeners on loopback ---------------------------------------------

// A port nothing listens on now.
uint16_t FreePort() {
  absl::StatusOr<int> fd = ListenSocket("127.0.0.1", 0);
  EXPECT_TRUE(fd.ok());
  sockaddr_in a = {};
  socklen_t len = sizeof(a);
  getsockname(*fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(*fd);
  return ntohs(a.sin_port);
}

// "<status> <body>" of GET / on 127.0.0.1:port; "refused" when nothing listens.
std::string Get(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "refused";
  }
  const std::string req = "GET /anything HTTP/1.1\r\nHost: x\r\n\r\n";
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  if (out.size() < 12 || body == std::string::npos) return "bad: " + out;
  return out.substr(9, 3) + " " + out.substr(body + 4);
}

class HealthPortsTest : public testing::Test {
 protected:
  void SetUp() override {
    auto p = HealthPorts::Start([this] { return healthy_.load(); },
                                [](uint16_t port) -> absl::StatusOr<std::vector<int>> {
                                  absl::StatusOr<int> fd = ListenSocket("127.0.0.1", port);
                                  if (!fd.ok()) return fd.status();
                                  return std::vector<int>{*fd};
                                });
    ASSERT_TRUE(p.ok()) << p.status();
    ports_ = std::move(*p);
  }
  std::atomic<bool> healthy_{true};
  std::unique_ptr<HealthPorts> ports_;
};

TEST_F(HealthPortsTest, OpensServesAndClosesWithinAWrite) {
  const uint16_t a = FreePort();
  ASSERT_TRUE(ports_->Prepare({{{"default", "web"}, HealthPort{"default", "web", a, 1}}}, false, false).ok());
  // Bound before the commit (a second bind fails), answered after it.
  EXPECT_FALSE(ListenSocket("127.0.0.1", a).ok());
  ports_->Commit();
  EXPECT_EQ(Get(a), "200 {\"service\": {\"namespace\": \"default\", \"name\": \"web\"}, \"localEndpoints\": 1, "
                    "\"serviceProxyHealthy\": true}\n");
  healthy_ = false;
  EXPECT_EQ(Get(a).substr(0, 3), "503");
  healthy_ = true;
  // The endpoint leaves this node.
  ASSERT_TRUE(ports_->Prepare({{{"default", "web"}, HealthPort{"default", "web", a, 0}}}, false, false).ok());
  ports_->Commit();
  EXPECT_EQ(Get(a), "503 {\"service\": {\"namespace\": \"default\", \"name\": \"web\"}, \"localEndpoints\": 0, "
                    "\"serviceProxyHealthy\": true}\n");
  // The service goes: the port is closed when Commit returns.
  ASSERT_TRUE(ports_->Prepare({{{"default", "web"}, std::nullopt}}, false, false).ok());
  EXPECT_EQ(Get(a).substr(0, 3), "503");  // still served until the commit
  ports_->Commit();
  EXPECT_EQ(Get(a), "refused");
  EXPECT_TRUE(ports_->Serving().empty());
}

TEST_F(HealthPortsTest, APortInUseFailsThePrepareAndChangesNothing) {
  const uint16_t a = FreePort(), b = FreePort();
  absl::StatusOr<int> taken = ListenSocket("127.0.0.1", b);
  ASSERT_TRUE(taken.ok());
  absl::Status s = ports_->Prepare({{{"default", "a"}, HealthPort{"default", "a", a, 1}},
                                    {{"default", "b"}, HealthPort{"default", "b", b, 1}}},
                                   false, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("service default/b: spec.healthCheckNodePort: cannot listen on health check node port"),
            std::string::npos) << s.message();
  EXPECT_NE(std::string(s.message()).find("Address already in use"), std::string::npos) << s.message();
  // a was opened and closed again; nothing is served.
  EXPECT_EQ(Get(a), "refused");
  EXPECT_TRUE(ports_->Serving().empty());
  absl::StatusOr<int> again = ListenSocket("127.0.0.1", a);
  EXPECT_TRUE(again.ok());
  if (again.ok()) close(*again);
  // Best effort (start-up): the other port is served.
  ASSERT_TRUE(ports_->Prepare({{{"default", "a"}, HealthPort{"default", "a", a, 1}},
                               {{"default", "b"}, HealthPort{"default", "b", b, 1}}},
                              true, true)
                  .ok());
  ports_->Commit();
  EXPECT_EQ(Get(a).substr(0, 3), "200");
  EXPECT_EQ(ports_->Serving().size(), 1u);
  close(*taken);
}

TEST_F(HealthPortsTest, AbortClosesWhatPrepareOpened) {
  const uint16_t a = FreePort();
  ASSERT_TRUE(ports_->Prepare({{{"default", "web"}, HealthPort{"default", "web", a, 1}}}, false, false).ok());
  ports_->Abort();
  EXPECT_EQ(Get(a), "refused");
  EXPECT_TRUE(ports_->Serving().empty());
  absl::StatusOr<int> again = ListenSocket("127.0.0.1", a);
  EXPECT_TRUE(again.ok());
  if (again.ok()) close(*again);
}

// --nodeport-addresses: the port on each node address inside the CIDRs.
TEST(BindOnNodeAddresses, BindsTheAddressesInside) {
  const uint16_t port = FreePort();
  auto bind = BindOnNodeAddresses({*dp::Cidr::Parse("127.0.0.0/8")});
  absl::StatusOr<std::vector<int>> fds = bind(port);
  ASSERT_TRUE(fds.ok()) << fds.status();
  ASSERT_GE(fds->size(), 1u);
  EXPECT_FALSE(ListenSocket("127.0.0.1", port).ok());  // taken
  for (int fd : *fds) close(fd);
  // No address inside (240/4 is reserved): an error, nothing bound.
  fds = BindOnNodeAddresses({*dp::Cidr::Parse("240.0.0.0/4")})(port);
  EXPECT_EQ(fds.status().code(), absl::StatusCode::kUnavailable);
  if (fds.ok()) {
    for (int fd : *fds) close(fd);
  }
}

}  // namespace
}  // namespace nftproxy::server
