// The one flag parser, shared by `serve` and the client commands.
#include "common/flags.h"

#include <gtest/gtest.h>

namespace nftproxy {
namespace {

TEST(Flags, ValuesBooleansAndPositionals) {
  std::string file, ns;
  std::vector<std::string> labels;
  bool dry = false, all = false;
  std::vector<FlagSpec> specs = {{{"-f", "--filename"}, &file},
                                 {{"-n"}, &ns},
                                 {{"-l"}, nullptr, &labels},
                                 {{"--dry-run"}, nullptr, nullptr, &dry},
                                 {{"-A"}, nullptr, nullptr, &all}};
  std::vector<std::string> pos;
  ASSERT_TRUE(ParseFlags({"get", "-f", "a.yaml", "--dry-run", "-n=shop", "-l", "x", "-l=y", "-", "--", "-A"}, specs,
                         &pos).ok());
  EXPECT_EQ(file, "a.yaml");
  EXPECT_EQ(ns, "shop");
  EXPECT_EQ(labels, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(dry);
  EXPECT_FALSE(all);  // after "--"
  EXPECT_EQ(pos, (std::vector<std::string>{"get", "-", "-A"}));
  pos.clear();
  ASSERT_TRUE(ParseFlags({"--dry-run=false", "--filename=b.yaml"}, specs, &pos).ok());
  EXPECT_FALSE(dry);
  EXPECT_EQ(file, "b.yaml");

  absl::Status s = ParseFlags({"--nope"}, specs, &pos);
  EXPECT_EQ(s.message(), "unknown flag --nope");
  s = ParseFlags({"-f"}, specs, &pos);
  EXPECT_EQ(s.message(), "-f: needs a value");
  s = ParseFlags({"--dry-run=maybe"}, specs, &pos);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace nftproxy
