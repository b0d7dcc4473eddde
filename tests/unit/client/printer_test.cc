// `get` output as pages arrive: every format prints what the whole listing
// would print at once, and tables keep one set of column widths.
#include "client/printer.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <sstream>

#include "client/output.h"

namespace nftproxy::client {
namespace {

v1::Resource Svc(const std::string& name, const std::string& vip, const std::string& labels = "") {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "service { metadata { namespace: \"default\" name: \"" + name + "\" " + labels +
          " create_time { seconds: 1000 } } spec { cluster_ips: \"" + vip + "\" ports { port: 80 } } }",
      &r));
  return r;
}

v1::Resource Slice(const std::string& name) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "endpoint_slice { metadata { namespace: \"default\" name: \"" + name + "\" } service_name: \"web\" }", &r));
  return r;
}

// Prints `pages` through a printer of `o`.
std::string Print(PrintOptions o, const std::vector<std::vector<v1::Resource>>& pages) {
  o.now = absl::FromUnixSeconds(1000 + 60);
  std::ostringstream out;
  absl::StatusOr<std::unique_ptr<Printer>> p = NewPrinter(o, &out);
  EXPECT_TRUE(p.ok()) << p.status();
  for (const auto& page : pages) {
    for (const v1::Resource& r : page) (*p)->Add(r);
    (*p)->Flush();
  }
  (*p)->Finish();
  return out.str();
}

PrintOptions Format(const std::string& f) {
  PrintOptions o;
  o.format = f;
  return o;
}

TEST(Printer, TableKeepsTheWidthsOfEarlierPages) {
  const std::string out = Print(Format("table"), {{Svc("a", "198.19.0.1")}, {Svc("bbbbbbbb", "198.19.0.2")}});
  EXPECT_EQ(out,
            "NAMESPACE   NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\n"
            "default     a      ClusterIP   198.19.0.1   <none>        80/TCP    60s\n"
            // wider than the first page: the column widens from here on
            "default     bbbbbbbb   ClusterIP   198.19.0.2   <none>        80/TCP    60s\n");
  // One page: exactly FormatTable's output.
  EXPECT_EQ(Print(Format("table"), {{Svc("a", "198.19.0.1"), Svc("bbbbbbbb", "198.19.0.2")}}),
            FormatTable({TableHeader(v1::SERVICE, false),
                         TableRow(Svc("a", "198.19.0.1"), false, absl::FromUnixSeconds(1060)),
                         TableRow(Svc("bbbbbbbb", "198.19.0.2"), false, absl::FromUnixSeconds(1060))}));
}

TEST(Printer, NoHeadersAndSeveralKinds) {
  PrintOptions o = Format("table");
  o.no_headers = true;
  EXPECT_EQ(Print(o, {{Svc("a", "198.19.0.1")}}), "default   a   ClusterIP   198.19.0.1   <none>   80/TCP   60s\n");
  o.no_headers = false;
  o.several_kinds = true;
  EXPECT_EQ(Print(o, {{Svc("a", "198.19.0.1")}, {Slice("a-1")}}),
            "NAMESPACE   NAME        TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\n"
            "default     service/a   ClusterIP   198.19.0.1   <none>        80/TCP    60s\n"
            "\n"
            "NAMESPACE   NAME                SERVICE   ENDPOINTS   PORTS    AGE\n"
            "default     endpointslice/a-1   web       <none>      <none>   <unknown>\n");
}

TEST(Printer, NameYamlJsonMatchTheWholeListing) {
  const std::vector<v1::Resource> all = {Svc("a", "198.19.0.1"), Svc("b", "198.19.0.2"), Svc("c", "198.19.0.3")};
  const std::vector<std::vector<v1::Resource>> pages = {{all[0], all[1]}, {}, {all[2]}};
  EXPECT_EQ(Print(Format("name"), pages), "service/a\nservice/b\nservice/c\n");
  EXPECT_EQ(Print(Format("yaml"), pages), ResourcesYaml(all));
  EXPECT_EQ(Print(Format("json"), pages), ResourcesJson(all));
  EXPECT_EQ(Print(Format("json"), {}), ResourcesJson({}));
  PrintOptions single = Format("json");
  single.single = true;
  EXPECT_EQ(Print(single, {{all[0]}}), ResourceJson(all[0]));
}

TEST(Printer, JsonPathOverPagesIsTheSameAsOverTheList) {
  const std::vector<v1::Resource> all = {Svc("a", "198.19.0.1"), Svc("b", "198.19.0.2"), Svc("c", "198.19.0.3")};
  for (const std::string& t : {"{.items[*].metadata.name}", "[{range .items[*]}{.metadata.name};{end}]",
                               "{.kind}: {.items[*].spec.clusterIps[0]}.", "{.items[0].metadata.name}",
                               "{.items[*].metadata.name}/{.items[*].metadata.namespace}"}) {
    const std::string whole = Print(Format("jsonpath=" + t), {all});
    EXPECT_EQ(Print(Format("jsonpath=" + t), {{all[0]}, {}, {all[1], all[2]}}), whole) << t;
    EXPECT_EQ(Print(Format("jsonpath=" + t), {{all[0]}, {all[1]}, {all[2]}}), whole) << t;
  }
  EXPECT_EQ(Print(Format("jsonpath={.items[*].metadata.name}"), {{all[0]}, {all[1], all[2]}}), "a b c");
  EXPECT_EQ(Print(Format("jsonpath={.kind}: {.items[*].spec.clusterIps[0]}."), {{all[0]}, {all[1], all[2]}}),
            "List: 198.19.0.1 198.19.0.2 198.19.0.3.");
  PrintOptions single = Format("jsonpath={.metadata.name}");
  single.single = true;
  EXPECT_EQ(Print(single, {{all[1]}}), "b");
  EXPECT_FALSE(NewPrinter(Format("jsonpath={.x"), nullptr).ok());
  EXPECT_FALSE(NewPrinter(Format("xml"), nullptr).ok());
}

}  // namespace
}  // namespace nftproxy::client
