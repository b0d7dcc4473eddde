// -o jsonpath: the documented subset, over JSON as the printers produce it.
#include "client/jsonpath.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

namespace nftproxy::client {
namespace {

google::protobuf::Value Json(const std::string& text) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &v).ok()) << text;
  return v;
}

std::string Eval(const std::string& tmpl, const std::string& json) {
  absl::StatusOr<JsonPathTemplate> t = JsonPathTemplate::Parse(tmpl);
  EXPECT_TRUE(t.ok()) << tmpl << ": " << t.status();
  return t.ok() ? t->Execute(Json(json)) : "<parse error>";
}

const char kService[] = R"({"kind": "Service", "metadata": {"name": "web", "namespace": "shop",
  "labels": {"app.kubernetes.io/name": "web", "tier": "front"}, "resourceVersion": "7"},
  "spec": {"clusterIps": ["198.19.0.1", "fd00::1"], "ports": [{"name": "http", "port": 80}, {"port": 53}],
           "selector": {}}})";

const char kList[] = R"({"kind": "List", "items": [
  {"kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 1}]}},
  {"kind": "Service", "metadata": {"name": "b"}},
  {"kind": "Service", "metadata": {"name": "c"}, "spec": {"ports": [{"port": 3}, {"port": 4}]}}]})";

TEST(JsonPath, FieldsIndexesAndText) {
  EXPECT_EQ(Eval("{.metadata.name}", kService), "web");
  EXPECT_EQ(Eval("name={.metadata.name} ns={.metadata.namespace}", kService), "name=web ns=shop");
  EXPECT_EQ(Eval("{.spec.ports[0].port}", kService), "80");
  EXPECT_EQ(Eval("{.spec.ports[-1].port}", kService), "53");
  EXPECT_EQ(Eval("{.spec.ports[5].port}", kService), "");
  EXPECT_EQ(Eval("{.spec.clusterIps[*]}", kService), "198.19.0.1 fd00::1");
  EXPECT_EQ(Eval("{.spec.ports[*].name}", kService), "http");
  EXPECT_EQ(Eval("{.metadata.labels['app.kubernetes.io/name']}", kService), "web");
  EXPECT_EQ(Eval("{.metadata.labels[\"tier\"]}", kService), "front");
  EXPECT_EQ(Eval("{.metadata.resourceVersion}", kService), "7");
  EXPECT_EQ(Eval("{.spec.ports[0]}", kService), R"({"name":"http","port":80})");
  EXPECT_EQ(Eval("{.spec.selector}", kService), "{}");
  EXPECT_EQ(Eval("{.no.such.field}", kService), "");
  EXPECT_EQ(Eval("{$.kind}{@.kind}", kService), "ServiceService");
  EXPECT_EQ(Eval("{\"a\\tb\\n\"}{'x'}", kService), "a\tb\nx");
  EXPECT_EQ(Eval("plain text", kService), "plain text");
  EXPECT_EQ(Eval("{.metadata.labels.*}", kService), "web front");
}

TEST(JsonPath, ItemsAndRange) {
  EXPECT_EQ(Eval("{.items[*].metadata.name}", kList), "a b c");
  EXPECT_EQ(Eval("{.items[*].spec.ports[*].port}", kList), "1 3 4");
  EXPECT_EQ(Eval("{.items[1].metadata.name}", kList), "b");
  EXPECT_EQ(Eval("{range .items[*]}{.metadata.name}:{.spec.ports[*].port}{\"\\n\"}{end}", kList), "a:1\nb:\nc:3 4\n");
  EXPECT_EQ(Eval("{range .items}[{.metadata.name}]{end}", kList), "[a][b][c]");
  EXPECT_EQ(Eval("{range .items[*]}{range .spec.ports[*]}{.port},{end};{end}", kList), "1,;;3,4,;");
  EXPECT_EQ(Eval("{range .items[*]}{$.kind}{end}", kList), "ListListList");
}

TEST(JsonPath, StreamingNode) {
  auto node = [](const std::string& t) { return JsonPathTemplate::Parse(t)->StreamingItemsNode(); };
  EXPECT_EQ(node("{.items[*].metadata.name}"), 0u);
  EXPECT_EQ(node("names: {range .items[*]}{.metadata.name}{end} done"), 1u);
  EXPECT_EQ(node("{.kind}"), JsonPathTemplate::npos);
  EXPECT_EQ(node("{.items[0].metadata.name}"), JsonPathTemplate::npos);
  EXPECT_EQ(node("{.items[*].metadata.name} {.items[*].metadata.namespace}"), JsonPathTemplate::npos);
}

TEST(JsonPath, Refusals) {
  for (const char* bad : {"{.items[", "{.metadata.name", "{range .items[*]}{.x}", "{end}", "{}", "{..name}",
                          "{.items[?(@.x==1)]}", "{.items[0:2]}", "{.items[a]}", "{metadata}", "{.a.}", "{\"x}"}) {
    absl::StatusOr<JsonPathTemplate> t = JsonPathTemplate::Parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) EXPECT_EQ(t.status().message().rfind("-o jsonpath: ", 0), 0u) << t.status();
  }
}

}  // namespace
}  // namespace nftproxy::client
