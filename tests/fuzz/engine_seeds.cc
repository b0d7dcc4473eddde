// Writes engine_fuzz's seed inputs into a directory: sequences of calls in
// engine_fuzz.cc's format (header, little-endian u16 length, payload), the
// payloads being serialized requests like those the CLI sends.
//
//   build-fuzz/tests/fuzz/engine_fuzz_seeds tests/fuzz/corpus/engine_fuzz
#include <google/protobuf/text_format.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nftproxy/v1/nftproxy.pb.h"

namespace {

namespace v1 = nftproxy::v1;

enum Op : uint8_t { kApply = 0, kSync = 1, kDelete = 2, kList = 3, kGet = 4, kRuleset = 5, kWatch = 6, kFail = 7 };

template <typename M>
std::string Bytes(const char* text) {
  M m;
  if (!google::protobuf::TextFormat::ParseFromString(text, &m)) {
    fprintf(stderr, "does not parse as %s: %s\n", m.GetTypeName().c_str(), text);
    exit(1);
  }
  return m.SerializeAsString();
}

class Seed {
 public:
  Seed& Add(uint8_t header, const std::string& payload) {
    out_.push_back(static_cast<char>(header));
    out_.push_back(static_cast<char>(payload.size() & 0xff));
    out_.push_back(static_cast<char>(payload.size() >> 8));
    out_ += payload;
    return *this;
  }
  Seed& Apply(const char* text) { return Add(kApply, Bytes<v1::ApplyRequest>(text)); }
  Seed& Sync(const char* text) { return Add(kSync, Bytes<v1::SyncRequest>(text)); }
  Seed& Delete(const char* text) { return Add(kDelete, Bytes<v1::DeleteRequest>(text)); }
  Seed& List(const char* text) { return Add(kList, Bytes<v1::ListRequest>(text)); }
  Seed& Get(const char* text) { return Add(kGet, Bytes<v1::ResourceRef>(text)); }
  Seed& Ruleset(const char* text) { return Add(kRuleset, Bytes<v1::GetRulesetRequest>(text)); }
  Seed& Watch(const char* text) { return Add(kWatch, Bytes<v1::WatchRequest>(text)); }
  // The next dataplane change is refused (code index 0-3), blamed on `service`.
  Seed& Fail(int code, const std::string& service) { return Add(static_cast<uint8_t>(kFail | code << 3), service); }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

const char kWeb[] = R"(
upserts { service { metadata { name: "web" } spec { cluster_ips: "198.19.0.10" cluster_ips: "fd00:96::10"
  ports { name: "http" port: 80 target_port_name: "http" } ports { name: "admin" port: 81 target_port: 9090 } } } }
upserts { endpoint_slice { metadata { name: "web-1" } service_name: "web"
  ports { name: "http" port: 8080 }
  endpoints { addresses: "198.18.10.2" node_name: "node-a" }
  endpoints { addresses: "198.18.11.2" conditions { ready: false } }
  endpoints { addresses: "198.18.12.2" addresses: "fd00:10::2" weight: 3 } } }
)";

const char kNodePort[] = R"(
upserts { service { metadata { namespace: "shop" name: "front" labels { key: "app" value: "front" } }
  spec { type: LOAD_BALANCER cluster_ips: "198.19.0.20" external_ips: "203.0.113.5"
    load_balancer_ips: "198.51.100.7" load_balancer_source_ranges: "192.168.0.0/16"
    external_traffic_policy: LOCAL session_affinity: CLIENT_IP session_affinity_timeout { seconds: 600 }
    ports { name: "http" protocol: TCP port: 80 target_port: 8080 node_port: 30080 }
    ports { name: "dns" protocol: UDP port: 53 target_port: 5353 node_port: 30053 } } } }
upserts { endpoint_slice { metadata { namespace: "shop" name: "front-a" } service_name: "front"
  ports { name: "http" port: 8080 } ports { name: "dns" protocol: UDP port: 5353 }
  endpoints { addresses: "10.0.0.5" node_name: "node-a" zone: "z1" }
  endpoints { addresses: "10.0.1.5" node_name: "node-b" conditions { ready: true serving: true } } } }
)";

const char kSelector[] = R"(source: "ci"
resources { service { metadata { name: "sel" } spec { cluster_ips: "198.19.0.30" selector { key: "app" value: "db" }
  load_balancing: ROUND_ROBIN ports { port: 5432 target_port: 5432 } } } }
resources { workload { metadata { name: "db-0" labels { key: "app" value: "db" } } addresses: "10.0.2.1"
  node_name: "node-a" weight: 2 } }
resources { workload { metadata { name: "db-1" labels { key: "app" value: "db" } } addresses: "10.0.2.2"
  ports { port: 5432 } } }
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::pair<std::string, Seed>> seeds;

  seeds.emplace_back("apply-list-get", Seed()
                                           .Apply(kWeb)
                                           .List(R"(page_size: 1)")
                                           .Get(R"(kind: SERVICE name: "web")")
                                           .Get(R"(kind: ENDPOINT_SLICE namespace: "default" name: "web-1")")
                                           .Ruleset(R"()")
                                           .Ruleset(R"(service: "web")"));
  seeds.emplace_back("nodeport-lb-delete", Seed()
                                               .Apply(kNodePort)
                                               .Apply(kWeb)
                                               .Delete(R"(refs { kind: SERVICE namespace: "shop" name: "front" })")
                                               .Watch(R"(since_revision: 1)"));
  seeds.emplace_back("sync-selector", Seed()
                                          .Sync(kSelector)
                                          .Sync(R"(source: "ci"
resources { service { metadata { name: "sel" } spec { cluster_ips: "198.19.0.30" selector { key: "app" value: "db" }
  ports { port: 5432 } } } })")
                                          .Sync(R"(source: "ci" dry_run: true)")
                                          .Watch(R"(kinds: SERVICE)"));
  seeds.emplace_back("conflicts", Seed()
                                      .Apply(kWeb)
                                      .Apply(R"(upserts { service { metadata { name: "web" resource_version: 99 }
  spec { cluster_ips: "198.19.0.10" ports { port: 80 } } } })")
                                      .Apply(R"(upserts { service { metadata { name: "other" }
  spec { cluster_ips: "198.19.0.10" ports { name: "http" port: 80 } } } })")
                                      .Apply(R"(dry_run: true deletes { kind: SERVICE name: "web" })")
                                      .Apply(R"(deletes { kind: SERVICE name: "nope" })"));
  seeds.emplace_back("kernel-refuses", Seed()
                                           .Apply(kWeb)
                                           .Fail(0, "default/web")
                                           .Apply(kNodePort)
                                           .Fail(1, "")
                                           .Delete(R"(refs { kind: ENDPOINT_SLICE name: "web-1" })")
                                           .Apply(kNodePort)
                                           .Watch(R"(since_revision: 1)"));
  seeds.emplace_back("mixed-brief", Seed()
                                        .Apply(kNodePort)
                                        .Apply(R"(brief: true source: "team-a"
upserts { workload { metadata { namespace: "shop" name: "w" labels { key: "app" value: "front" } }
  addresses: "10.0.3.3" addresses: "fd00:10::3" } }
deletes { kind: ENDPOINT_SLICE namespace: "shop" name: "front-a" })")
                                        .List(R"(kind: WORKLOAD namespace: "shop")"));

  for (const auto& [name, seed] : seeds) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << seed.bytes();
    if (!out) {
      fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
