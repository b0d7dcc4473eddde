// Validation: every bad field is refused with a message naming object and field.
#include "server/validate.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/errors.h"

namespace nftproxy::server {
namespace {

v1::Resource Parse(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

const char kGood[] = R"(service {
  metadata { namespace: "default" name: "web" }
  spec {
    cluster_ips: "198.19.0.10" cluster_ips: "fd00:96::10"
    ports { name: "http" protocol: TCP port: 80 target_port: 8080 }
    ports { name: "dns" protocol: UDP port: 53 target_port_name: "dns" }
  }
})";

void ExpectInvalid(const std::string& text, const std::string& needle) {
  absl::Status s = ValidateResource(Parse(text));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << "message: " << s.message();
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(Validate, GoodServicePasses) { EXPECT_TRUE(ValidateResource(Parse(kGood)).ok()); }

TEST(Validate, BadFieldsAreNamed) {
  ExpectInvalid(Replace(kGood, "port: 80", "port: 70000"), "service default/web: spec.ports[0].port: 70000 is out of range");
  ExpectInvalid(Replace(kGood, "\"198.19.0.10\"", "\"198.19.0.999\""), "spec.clusterIps[0]: \"198.19.0.999\" is not an IP address");
  ExpectInvalid(Replace(kGood, "\"fd00:96::10\"", "\"198.19.0.11\""), "spec.clusterIps[1]: at most one address per IP family");
  ExpectInvalid(Replace(kGood, "name: \"dns\" protocol", "name: \"http\" protocol"), "spec.ports[1].name: duplicate port name \"http\"");
  ExpectInvalid(Replace(kGood, "name: \"web\"", "name: \"" + std::string(64, 'a') + "\""), "metadata.name");
  ExpectInvalid(Replace(kGood, "name: \"web\"", "name: \"Web_1\""), "metadata.name: \"Web_1\" must be a DNS label");
  ExpectInvalid(Replace(kGood, "protocol: UDP", "protocol: 7"), "spec.ports[1].protocol: unknown protocol 7");
  ExpectInvalid(Replace(kGood, "target_port: 8080", "target_port: 0"), "spec.ports[0].targetPort");
  ExpectInvalid(Replace(kGood, "name: \"http\" ", ""), "spec.ports[0].name: required when the service has more than one port");
}

TEST(Validate, HeadlessServices) {
  // Without cluster IPs: headless (DNS only), ports optional; not with node ports or external IPs.
  EXPECT_TRUE(ValidateResource(Parse(R"(service { metadata { name: "a" } spec { ports { port: 80 } } })")).ok());
  EXPECT_TRUE(ValidateResource(Parse(R"(service { metadata { name: "a" } spec { } })")).ok());
  ExpectInvalid(R"(service { metadata { name: "a" } spec { type: NODE_PORT ports { port: 80 } } })",
                "spec.clusterIps: required for types NODE_PORT and LOAD_BALANCER");
  ExpectInvalid(R"(service { metadata { name: "a" } spec { external_ips: "192.0.2.1" ports { port: 80 } } })",
                "spec.externalIps: not allowed on a headless service");
  ExpectInvalid(R"(service { metadata { name: "a" } spec { cluster_ips: "10.96.0.1" } })", "spec.ports: required");
}

TEST(Validate, SliceAndWorkload) {
  ExpectInvalid(R"(endpoint_slice { metadata { name: "s" } service_name: "web" endpoints { addresses: "nope" } })",
                "endpointslice default/s: endpoints[0].addresses[0]");
  ExpectInvalid(R"(endpoint_slice { metadata { name: "s" } endpoints { addresses: "198.18.0.1" } })", "serviceName: required");
  ExpectInvalid(R"(endpoint_slice { metadata { name: "s" } service_name: "web" endpoints { addresses: "198.18.0.1" weight: 20000 } })",
                "endpoints[0].weight");
  ExpectInvalid(R"(workload { metadata { name: "w" } })", "workload default/w: addresses: required");
}

State StateOf(const std::vector<std::string>& texts) {
  State st;
  for (const std::string& t : texts) {
    v1::Resource r = Parse(t);
    st.objects[KeyOf(r)] = r;
  }
  return st;
}

TEST(ValidateState, AddressClashNamesTheNewService) {
  State st = StateOf({R"(service { metadata { name: "a" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })",
                      R"(service { metadata { name: "b" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })"});
  absl::Status s = ValidateState(st, {Key{v1::SERVICE, "default", "a"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("service default/a: spec.clusterIps[0]: 198.19.0.10 port 80/TCP is already used by service default/b"),
            std::string::npos) << s.message();
  // Same address, other protocol: fine.
  st = StateOf({R"(service { metadata { name: "a" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })",
                R"(service { metadata { name: "b" } spec { cluster_ips: "198.19.0.10" ports { port: 80 protocol: UDP } } })"});
  EXPECT_TRUE(ValidateState(st, {Key{v1::SERVICE, "default", "a"}, Key{v1::SERVICE, "default", "b"}}).ok());
}

TEST(ValidateState, ServiceClaimsOneFrontendOnce) {
  // Two ports on one node port, and one address as cluster and external IP:
  // one of each pair would be unreachable.
  State st = StateOf({R"(service { metadata { name: "np" } spec { type: NODE_PORT cluster_ips: "198.19.0.10"
      ports { name: "a" port: 80 node_port: 30080 } ports { name: "b" port: 81 node_port: 30080 } } })"});
  absl::Status s = ValidateState(st, {Key{v1::SERVICE, "default", "np"}});
  EXPECT_NE(std::string(s.message()).find("service default/np: spec.ports[1].nodePort: node port 30080/TCP is already used by spec.ports[0].nodePort of the same service"),
            std::string::npos) << s.message();
  st = StateOf({R"(service { metadata { name: "x" } spec { cluster_ips: "198.19.0.11" external_ips: "198.19.0.11" ports { port: 80 } } })"});
  s = ValidateState(st, {Key{v1::SERVICE, "default", "x"}});
  EXPECT_NE(std::string(s.message()).find("service default/x: spec.externalIps[0]: 198.19.0.11 port 80/TCP is already used by spec.clusterIps[0] of the same service"),
            std::string::npos) << s.message();
}

// healthCheckNodePort, like kube-proxy's: only with externalTrafficPolicy
// LOCAL, in the node port range, and clashing with no node port and no other
// service's health check node port; the error names the object and field.
TEST(Validate, HealthCheckNodePort) {
  const std::string lb = R"(service { metadata { name: "lb" } spec { type: LOAD_BALANCER cluster_ips: "198.19.0.10"
      external_traffic_policy: LOCAL health_check_node_port: 32000 ports { port: 80 node_port: 30080 } } })";
  EXPECT_TRUE(ValidateResource(Parse(lb)).ok());
  ExpectInvalid(Replace(lb, "external_traffic_policy: LOCAL ", ""),
                "service default/lb: spec.healthCheckNodePort: only allowed with externalTrafficPolicy LOCAL");
  ExpectInvalid(Replace(lb, "32000", "70000"), "service default/lb: spec.healthCheckNodePort: 70000 is out of range");
}

TEST(ValidateState, HealthCheckNodePortClashes) {
  const Key a{v1::SERVICE, "default", "a"}, b{v1::SERVICE, "default", "b"};
  auto svc = [](const std::string& name, const std::string& extra) {
    return absl::StrCat(R"(service { metadata { name: ")", name,
                        R"(" } spec { type: LOAD_BALANCER external_traffic_policy: LOCAL )", extra, " } }");
  };
  // Outside the node port range.
  State st = StateOf({svc("a", "health_check_node_port: 8080 ports { port: 80 node_port: 30080 }")});
  absl::Status s = ValidateState(st, {a});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("service default/a: spec.healthCheckNodePort: 8080 is outside the node port range 30000-32767"),
            std::string::npos) << s.message();
  // The same service's node port.
  st = StateOf({svc("a", "health_check_node_port: 30080 ports { port: 80 node_port: 30080 }")});
  s = ValidateState(st, {a});
  EXPECT_NE(std::string(s.message()).find("service default/a: spec.healthCheckNodePort: node port 30080/TCP is already used by spec.ports[0].nodePort of the same service"),
            std::string::npos) << s.message();
  // Another service's node port (of any protocol), either way round.
  st = StateOf({svc("a", "health_check_node_port: 31000 ports { port: 80 node_port: 30080 }"),
                svc("b", "ports { port: 53 protocol: UDP node_port: 31000 }")});
  s = ValidateState(st, {a});
  EXPECT_NE(std::string(s.message()).find("service default/a: spec.healthCheckNodePort: node port 31000/UDP is already used by service default/b"),
            std::string::npos) << s.message();
  s = ValidateState(st, {b});
  EXPECT_NE(std::string(s.message()).find("service default/b: spec.ports[0].nodePort: node port 31000/UDP is already used by service default/a"),
            std::string::npos) << s.message();
  auto detail = ErrorDetailOf(s);
  ASSERT_TRUE(detail.has_value());
  EXPECT_EQ(detail->field(), "spec.ports[0].nodePort");
  // Another service's health check node port.
  st = StateOf({svc("a", "health_check_node_port: 31000 ports { port: 80 node_port: 30080 }"),
                svc("b", "health_check_node_port: 31000 ports { port: 80 node_port: 30081 }")});
  s = ValidateState(st, {b});
  EXPECT_NE(std::string(s.message()).find("service default/b: spec.healthCheckNodePort: node port 31000/TCP is already used by service default/a"),
            std::string::npos) << s.message();
  detail = ErrorDetailOf(s);
  ASSERT_TRUE(detail.has_value());
  EXPECT_EQ(detail->field(), "spec.healthCheckNodePort");
  // Distinct ports: fine.
  st = StateOf({svc("a", "health_check_node_port: 31000 ports { port: 80 node_port: 30080 }"),
                svc("b", "health_check_node_port: 31001 ports { port: 80 node_port: 30081 }")});
  EXPECT_TRUE(ValidateState(st, {a, b}).ok());
}

TEST(ValidateState, SelectorAndSliceConflict) {
  State st = StateOf({R"(service { metadata { name: "web" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } selector { key: "app" value: "web" } } })",
                      R"(endpoint_slice { metadata { name: "web-1" } service_name: "web" })"});
  absl::Status s = ValidateState(st, {Key{v1::ENDPOINT_SLICE, "default", "web-1"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("endpointslice default/web-1: serviceName"), std::string::npos) << s.message();
  s = ValidateState(st, {Key{v1::SERVICE, "default", "web"}});
  EXPECT_NE(std::string(s.message()).find("service default/web: spec.selector"), std::string::npos) << s.message();
}

// Every address kind a proxy cannot use, in every place an address goes.
TEST(Validate, UnusableAddressesAreRefusedEverywhere) {
  const struct {
    const char* addr;
    const char* why;
  } kinds[] = {
      {"127.0.0.1", "a loopback address"},       {"127.5.6.7", "a loopback address"},
      {"::1", "a loopback address"},             {"0.0.0.0", "the unspecified address"},
      {"::", "the unspecified address"},         {"224.0.0.1", "a multicast address"},
      {"239.255.255.250", "a multicast address"}, {"ff02::1", "a multicast address"},
      {"255.255.255.255", "the broadcast address"},
      {"::ffff:10.1.2.3", "an IPv4-mapped IPv6 address"},
  };
  for (const auto& k : kinds) {
    SCOPED_TRACE(k.addr);
    const bool v6 = std::string(k.addr).find(':') != std::string::npos;
    const std::string other = v6 ? "198.19.0.10" : "fd00:96::10";
    ExpectInvalid(absl::StrCat(R"(service { metadata { name: "web" } spec { cluster_ips: ")", k.addr,
                               R"(" ports { port: 80 } } })"),
                  absl::StrCat("spec.clusterIps[0]: ", k.addr, " is ", k.why));
    ExpectInvalid(absl::StrCat(R"(service { metadata { name: "web" } spec { cluster_ips: ")", other,
                               R"(" external_ips: ")", k.addr, R"(" ports { port: 80 } } })"),
                  absl::StrCat("spec.externalIps[0]: ", k.addr, " is ", k.why));
    ExpectInvalid(absl::StrCat(R"(service { metadata { name: "web" } spec { type: LOAD_BALANCER cluster_ips: ")",
                               other, R"(" load_balancer_ips: ")", k.addr, R"(" ports { port: 80 node_port: 30080 } } })"),
                  absl::StrCat("spec.loadBalancerIps[0]: ", k.addr, " is ", k.why));
    ExpectInvalid(absl::StrCat(R"(endpoint_slice { metadata { name: "web-1" } service_name: "web" endpoints { addresses: ")",
                               k.addr, R"(" } })"),
                  absl::StrCat("endpoints[0].addresses[0]: ", k.addr, " is ", k.why));
    ExpectInvalid(absl::StrCat(R"(workload { metadata { name: "w" } addresses: ")", k.addr, R"(" })"),
                  absl::StrCat("addresses[0]: ", k.addr, " is ", k.why));
  }
  // Ordinary private and documentation addresses are fine.
  for (const char* ok : {"10.1.2.3", "198.19.0.10", "fd00::1", "2001:db8::1", "169.254.1.1"}) {
    EXPECT_EQ(UnusableAddress(*dp::IpAddr::Parse(ok)), "") << ok;
  }
}

TEST(Validate, OversizedResourcesAreRefusedNamingTheLimit) {
  ResourceLimits limits;
  limits.ports_per_service = 3;
  limits.endpoints_per_slice = 2;
  limits.addresses_per_service = 2;
  v1::Resource svc = Parse(R"(service { metadata { name: "web" } spec { cluster_ips: "198.19.0.10" } })");
  for (int i = 0; i < 4; ++i) {
    v1::ServicePort* p = svc.mutable_service()->mutable_spec()->add_ports();
    p->set_name(absl::StrCat("p", i));
    p->set_port(80 + i);
  }
  absl::Status s = ValidateResource(svc, limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "service default/web: spec.ports: 4 items; at most 3 are allowed (server flag --max-ports-per-service)");
  svc.mutable_service()->mutable_spec()->mutable_ports()->RemoveLast();
  EXPECT_TRUE(ValidateResource(svc, limits).ok());
  for (const char* ip : {"198.19.1.1", "198.19.1.2", "198.19.1.3"}) svc.mutable_service()->mutable_spec()->add_external_ips(ip);
  EXPECT_NE(std::string(ValidateResource(svc, limits).message()).find("spec.externalIps: 3 items; at most 2"),
            std::string::npos);
  v1::Resource slice = Parse(R"(endpoint_slice { metadata { name: "web-1" } service_name: "web"
    endpoints { addresses: "10.0.0.1" } endpoints { addresses: "10.0.0.2" } endpoints { addresses: "10.0.0.3" } })");
  EXPECT_NE(std::string(ValidateResource(slice, limits).message())
                .find("endpoints: 3 items; at most 2 are allowed (server flag --max-endpoints-per-slice)"),
            std::string::npos);
  // The defaults: Kubernetes' 1,000 endpoints per slice.
  v1::Resource big = Parse(R"(endpoint_slice { metadata { name: "web-1" } service_name: "web" })");
  for (int i = 0; i < 1001; ++i) {
    big.mutable_endpoint_slice()->add_endpoints()->add_addresses(absl::StrCat("10.0.", i / 250, ".", 1 + i % 250));
  }
  EXPECT_NE(std::string(ValidateResource(big).message()).find("at most 1000"), std::string::npos);
  big.mutable_endpoint_slice()->mutable_endpoints()->RemoveLast();
  EXPECT_TRUE(ValidateResource(big).ok()) << ValidateResource(big);
}

TEST(Validate, ErrorsNameTheResourceAndFieldAsDetail) {
  absl::Status s = ValidateResource(Parse(Replace(kGood, "port: 80", "port: 70000")));
  ASSERT_FALSE(s.ok());
  std::optional<v1::ErrorDetail> d = ErrorDetailOf(s);
  ASSERT_TRUE(d.has_value()) << s;
  EXPECT_EQ(KeyOf(d->resource()), (Key{v1::SERVICE, "default", "web"}));
  EXPECT_EQ(d->field(), "spec.ports[0].port");
  // Clashes between resources name the one this write changed.
  State state = StateOf({R"(service { metadata { name: "a" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })",
                         R"(service { metadata { name: "b" } spec { cluster_ips: "198.19.0.10" ports { port: 80 } } })"});
  s = ValidateState(state, {Key{v1::SERVICE, "default", "b"}});
  ASSERT_FALSE(s.ok());
  d = ErrorDetailOf(s);
  ASSERT_TRUE(d.has_value()) << s;
  EXPECT_EQ(KeyOf(d->resource()), (Key{v1::SERVICE, "default", "b"}));
  EXPECT_EQ(d->field(), "spec.clusterIps[0]");
}

}  // namespace
}  // namespace nftproxy::server
