// The one flag parser, shared by `serve` and the client commands.
#include "common/flags.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/strings/match.h"

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

// The flag file (serve --config): keys are the flags' long names.
struct FileFlags {
  std::string table = "nftproxy", level = "info";
  std::vector<std::string> listen;
  bool adopt = false, help = false;
  std::vector<FlagSpec> Specs() {
    return {{{"-h", "--help"}, nullptr, nullptr, &help, false},
            {{"--table"}, &table},
            {{"--log-level", "--v", "-v"}, &level},
            {{"--listen"}, nullptr, &listen},
            {{"--adopt-table"}, nullptr, nullptr, &adopt}};
  }
};

TEST(FlagFile, KeyIsTheFirstLongName) {
  FileFlags f;
  std::vector<std::string> keys;
  for (const FlagSpec& s : f.Specs()) keys.push_back(FlagKey(s));
  EXPECT_EQ(keys, (std::vector<std::string>{"help", "table", "log-level", "listen", "adopt-table"}));
}

TEST(FlagFile, EveryKeyType) {
  FileFlags f;
  std::map<std::string, FlagOrigin> at;
  ASSERT_TRUE(ParseFlagFile("# settings\ntable: mine\nlog-level: debug\nlisten:\n  - unix:///a.sock\n  - "
                            "tcp://127.0.0.1:7070\nadopt-table: true\n",
                            "c.yaml", f.Specs(), {}, &at)
                  .ok());
  EXPECT_EQ(f.table, "mine");
  EXPECT_EQ(f.level, "debug");
  EXPECT_EQ(f.listen, (std::vector<std::string>{"unix:///a.sock", "tcp://127.0.0.1:7070"}));
  EXPECT_TRUE(f.adopt);
  EXPECT_EQ(at["table"].line, 2);
  EXPECT_EQ(at["table"].column, 8);
  // One value for a list; flow lists; false; an empty file; [] and null empty a list.
  ASSERT_TRUE(ParseFlagFile("listen: unix:///b.sock\nadopt-table: false\n", "c.yaml", f.Specs(), {}).ok());
  EXPECT_EQ(f.listen, (std::vector<std::string>{"unix:///b.sock"}));
  EXPECT_FALSE(f.adopt);
  ASSERT_TRUE(ParseFlagFile("listen: [x, y]\n", "c.yaml", f.Specs(), {}).ok());
  EXPECT_EQ(f.listen, (std::vector<std::string>{"x", "y"}));
  ASSERT_TRUE(ParseFlagFile("listen: []\n", "c.yaml", f.Specs(), {}).ok());
  EXPECT_TRUE(f.listen.empty());
  ASSERT_TRUE(ParseFlagFile("# nothing set\n", "c.yaml", f.Specs(), {}).ok());
  ASSERT_TRUE(ParseFlagFile("", "c.yaml", f.Specs(), {}).ok());
}

TEST(FlagFile, CommandLineWins) {
  FileFlags f;
  std::set<std::string> given;
  std::vector<std::string> pos;
  ASSERT_TRUE(ParseFlags({"--listen", "cli.sock", "--v", "warning"}, f.Specs(), &pos, &given).ok());
  EXPECT_EQ(given, (std::set<std::string>{"listen", "log-level"}));
  std::map<std::string, FlagOrigin> at;
  ASSERT_TRUE(
      ParseFlagFile("listen: [a, b]\nlog-level: debug\ntable: t\n", "c.yaml", f.Specs(), given, &at).ok());
  EXPECT_EQ(f.listen, (std::vector<std::string>{"cli.sock"}));  // replaced, not appended to
  EXPECT_EQ(f.level, "warning");
  EXPECT_EQ(f.table, "t");
  EXPECT_EQ(at.count("listen"), 0u);
  EXPECT_EQ(at.count("table"), 1u);
  // A key the command line gave is still checked in the file.
  EXPECT_FALSE(ParseFlagFile("listen: {a: b}\n", "c.yaml", f.Specs(), given).ok());
}

TEST(FlagFile, UnknownKeyNamesFileLineAndKey) {
  FileFlags f;
  absl::Status s = ParseFlagFile("table: x\n\nlistne: y\n", "/etc/nftproxy/config.yaml", f.Specs(), {});
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_TRUE(absl::StartsWith(s.message(), "/etc/nftproxy/config.yaml:3:1: listne: unknown key")) << s.message();
  EXPECT_NE(s.message().find("did you mean \"listen\""), std::string::npos) << s.message();
  // Flags a file may not set, and a flag's other spellings, are unknown keys.
  EXPECT_FALSE(ParseFlagFile("help: true\n", "c.yaml", f.Specs(), {}).ok());
  EXPECT_FALSE(ParseFlagFile("v: debug\n", "c.yaml", f.Specs(), {}).ok());
  s = ParseFlagFile("table: a\ntable: b\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:2:1: table: given twice");
}

TEST(FlagFile, WrongTypes) {
  FileFlags f;
  absl::Status s = ParseFlagFile("table: [a, b]\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:1:8: table: want a single value, got a list");
  s = ParseFlagFile("adopt-table: yes please\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:1:14: adopt-table: want true or false, got \"yes please\"");
  s = ParseFlagFile("listen:\n  - [a]\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:2:5: listen: want a list of values, got a list in it");
  s = ParseFlagFile("listen: {a: b}\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:1:9: listen: want a value or a list of values, got a mapping");
  s = ParseFlagFile("table:\n", "c.yaml", f.Specs(), {});
  EXPECT_EQ(s.message(), "c.yaml:1:1: table: want a single value, got null");
  s = ParseFlagFile("- table\n", "c.yaml", f.Specs(), {});
  EXPECT_TRUE(absl::StartsWith(s.message(), "c.yaml:1:1: want a mapping of settings")) << s.message();
  s = ParseFlagFile("table: [a\n", "c.yaml", f.Specs(), {});
  EXPECT_TRUE(absl::StartsWith(s.message(), "c.yaml:")) << s.message();
  EXPECT_NE(s.message().find("not YAML"), std::string::npos) << s.message();
  s = LoadFlagFile("/nonexistent/config.yaml", f.Specs(), {});
  EXPECT_TRUE(absl::StartsWith(s.message(), "/nonexistent/config.yaml: cannot read")) << s.message();
}

}  // namespace
}  // namespace nftproxy
