// The renderer (render.cc): the text `nft list table` prints, from the
// same statements the writer encodes.
#include <gtest/gtest.h>

#include "dataplane/ruleset.h"
#include "tests/unit/dataplane/test_services.h"

namespace nftproxy::dp {
namespace {

using testing::Ip;
using testing::Text;
using testing::Web;

TEST(Compile, PickChainsAndRestoreAreInTheSkeleton) {
  Model m;
  m.services.push_back(Web());
  const std::string text = Render(Compile(m, "nftproxy"));
  EXPECT_NE(text.find("\t\tmeta l4proto udp dnat ip to meta mark map @backends4-0\n"), std::string::npos);
  EXPECT_NE(text.find("\t\tmeta l4proto tcp dnat ip6 to meta mark map @backends6-0\n"), std::string::npos);
  EXPECT_NE(text.find("meta mark 0x80000000/1 meta mark set ct mark ct mark set 0x00000000"), std::string::npos);
  EXPECT_NE(text.find("0x80000000-0x80000555 : 198.18.10.2 . 8080"), std::string::npos) << text;
}

TEST(Render, SkeletonFollowsTheNodeSettings) {
  Model m;
  m.services.push_back(Web());
  const Ruleset plain = Compile(m, "nftproxy");
  EXPECT_EQ(Text(plain, "services"),
            "\tchain services {\n"
            "\t\tip daddr . meta l4proto . th dport vmap @service-ips4\n"
            "\t\tip6 daddr . meta l4proto . th dport vmap @service-ips6\n"
            "\t\tip daddr @cluster-ips4 reject\n"
            "\t\tip6 daddr @cluster-ips6 reject\n"
            "\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @nodeports4\n"
            "\t\tfib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @nodeports6\n"
            "\t}\n");
  EXPECT_EQ(Text(plain, "masquerading").find("ct original"), std::string::npos);
  m.node.cluster_cidrs = {*Cidr::Parse("10.1.2.3/16")};
  m.node.nodeport_cidrs = {*Cidr::Parse("192.0.2.0/24")};
  const Ruleset rs = Compile(m, "nftproxy");
  EXPECT_NE(Text(rs, "services").find("\t\tip daddr @nodeport-addrs4 meta l4proto . th dport vmap @nodeports4\n"),
            std::string::npos);
  EXPECT_EQ(Text(rs, "masquerading"),
            "\tchain masquerading {\n"
            "\t\tip saddr . ip daddr @hairpin4 masquerade\n"
            "\t\tip6 saddr . ip6 daddr @hairpin6 masquerade\n"
            "\t\tct label 127 masquerade\n"
            "\t\tip saddr @cluster-cidrs4 return\n"
            "\t\tip6 saddr @cluster-cidrs6 return\n"
            "\t\tct original ip daddr @cluster-ips4 masquerade\n"
            "\t\tct original ip6 daddr @cluster-ips6 masquerade\n"
            "\t}\n");
  const std::string text = Render(rs);
  EXPECT_NE(text.find("\tset cluster-cidrs4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                      "\t\telements = { 10.1.0.0/16 }\n\t}\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\tmap affinity4 {\n\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service : mark\n"
                      "\t\tsize 262144\n\t\tflags dynamic,timeout\n\t}\n"),
            std::string::npos);
  EXPECT_NE(text.find("\tchain mark-restore {\n\t\ttype filter hook prerouting priority dstnat + 1; policy accept;\n"),
            std::string::npos);
}

TEST(Render, EmptyModelIsTheSkeletonAlone) {
  const std::string text = Render(Compile(Model{}, "x"));
  EXPECT_EQ(text.rfind("table inet x {\n", 0), 0u);
  EXPECT_EQ(text.find("backends4-0"), std::string::npos);
  EXPECT_NE(text.find("\tchain mark-restore-output {\n\t\ttype route hook output priority -99; policy accept;\n"
                      "\t\tmeta mark 0x80000000/1 meta mark set ct mark ct mark set 0x00000000\n\t}\n}\n"),
            std::string::npos)
      << text;
}

TEST(Render, InPiecesOfWholeLinesThatMakeTheText) {
  Model m;
  for (int i = 0; i < 300; ++i) {
    Service s = Web();
    s.name = "web-" + std::to_string(i);
    s.cluster_ips = {Ip(("198.19." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250)).c_str())};
    m.services.push_back(s);
  }
  const Ruleset rs = Compile(m, "x");
  const std::string whole = Render(rs);
  std::string joined;
  int pieces = 0;
  RenderTo(rs, 4096, [&](absl::string_view piece) {
    EXPECT_FALSE(piece.empty());
    EXPECT_EQ(piece.back(), '\n');
    joined.append(piece.data(), piece.size());
    ++pieces;
    return true;
  });
  EXPECT_EQ(joined, whole);
  EXPECT_GT(pieces, 10);
  // A sink that says stop gets nothing more.
  int calls = 0;
  RenderTo(rs, 4096, [&calls](absl::string_view) { return ++calls < 2; });
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace nftproxy::dp
