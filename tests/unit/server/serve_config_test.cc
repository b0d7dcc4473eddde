// serve --config FILE (server/serve.cc over common/flags.h): the keys come
// from the flag table, the command line wins, mistakes name the place; and
// the packaged default file (packaging/nftproxy.yaml) stays in step.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/serve.h"
#include "server/validate.h"
#include "server/write_engine.h"

namespace nftproxy::server {
namespace {

class ServeConfig : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    const std::string path = (std::filesystem::path(::testing::TempDir()) /
                              absl::StrCat("serve_config_", getpid(), "_", n_++, ".yaml"))
                                 .string();
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  ~ServeConfig() override {
    for (const std::string& f : files_) std::filesystem::remove(f);
  }
  std::map<std::string, std::vector<std::string>> Resolve(const std::vector<std::string>& args) {
    auto r = ResolveServeSettings(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::map<std::string, std::vector<std::string>>{};
  }
  int n_ = 0;
  std::vector<std::string> files_;
};

using V = std::vector<std::string>;

TEST_F(ServeConfig, KeysAreTheFlagsWithoutDashes) {
  const std::vector<std::string> keys = ServeConfigKeys();
  for (const char* k : {"listen", "state-dir", "table", "tls-cert", "tls-key", "tls-client-ca", "max-watch-streams",
                        "watch-buffer-events", "manifests", "adopt-table", "insecure-listen", "recover", "log-level",
                        "cluster-cidr", "nodeport-addresses", "max-request-bytes", "socket-group", "authz"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
  for (const char* k : {"help", "help-authz", "config", "v"}) {
    EXPECT_EQ(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
}

TEST_F(ServeConfig, EveryKeyType) {
  const std::string file = Write(
      "table: from-file\n"                                       // a value
      "listen: [unix:///tmp/a.sock, tcp://127.0.0.1:7070]\n"     // a list
      "cluster-cidr: 10.0.0.0/8\n"                               // one value for a list
      "adopt-table: true\n"                                      // on/off
      "insecure-listen: false\n"
      "max-watch-streams: 17\n"                                  // a number, as text
      "socket-mode: \"0600\"\n");
  auto s = Resolve({"--config", file});
  EXPECT_EQ(s["table"], V{"from-file"});
  EXPECT_EQ(s["listen"], (V{"unix:///tmp/a.sock", "tcp://127.0.0.1:7070"}));
  EXPECT_EQ(s["cluster-cidr"], V{"10.0.0.0/8"});
  EXPECT_EQ(s["adopt-table"], V{"true"});
  EXPECT_EQ(s["insecure-listen"], V{"false"});
  EXPECT_EQ(s["max-watch-streams"], V{"17"});
  EXPECT_EQ(s["socket-mode"], V{"0600"});
  EXPECT_EQ(s["state-dir"], V{"/var/lib/nftproxy"});  // not in the file: the default
}

TEST_F(ServeConfig, CommandLineWins) {
  const std::string file = Write("table: from-file\nlisten: [a.sock, b.sock]\nadopt-table: true\nlog-level: debug\n");
  auto s = Resolve({"--table", "from-flag", "--config", file, "--listen", "c.sock", "--adopt-table=false"});
  EXPECT_EQ(s["table"], V{"from-flag"});
  EXPECT_EQ(s["listen"], V{"c.sock"});  // replaces the file's list
  EXPECT_EQ(s["adopt-table"], V{"false"});
  EXPECT_EQ(s["log-level"], V{"debug"});  // from the file
  // --v is log-level's other spelling: it wins over the file's log-level.
  EXPECT_EQ(Resolve({"--config", file, "--v", "warning"})["log-level"], V{"warning"});
}

TEST_F(ServeConfig, UnknownKeyNamesFileLineAndKey) {
  const std::string file = Write("table: t\n# a comment\nmax-watch-stream: 5\n");
  auto s = ResolveServeSettings({"--config", file});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StartsWith(s.status().message(), absl::StrCat(file, ":3:1: max-watch-stream: unknown key")))
      << s.status();
  EXPECT_NE(s.status().message().find("did you mean \"max-watch-streams\""), std::string::npos) << s.status();
  // config and help are not keys.
  EXPECT_FALSE(ResolveServeSettings({"--config", Write("config: /x.yaml\n")}).ok());
}

TEST_F(ServeConfig, WrongTypeNamesFileLineAndKey) {
  const std::string file = Write("listen: unix:///a.sock\nstate-dir: [a, b]\n");
  auto s = ResolveServeSettings({"--config", file});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), absl::StrCat(file, ":2:12: state-dir: want a single value, got a list"));
  s = ResolveServeSettings({"--config", Write("recover: sometimes\n")});
  EXPECT_NE(s.status().message().find(":1:10: recover: want true or false"), std::string::npos) << s.status();
}

TEST_F(ServeConfig, BadValueNamesFileLineAndKey) {
  // Checked at parse time.
  const std::string file = Write("table: t\nlog-level: chatty\n");
  auto s = ResolveServeSettings({"--config", file});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StartsWith(s.status().message(), absl::StrCat(file, ":2:12: key log-level: --log-level")))
      << s.status();
  // Checked by serve before it touches anything (no root needed to get here).
  for (const auto& [text, where] :
       std::vector<std::pair<std::string, std::string>>{{"table: t\nnodeport-range: 1-x\n", ":2:17: key nodeport-range"},
                                                        {"max-labels: lots\n", ":1:13: key max-labels"},
                                                        {"socket-mode: \"0777x\"\n", ":1:14: key socket-mode"},
                                                        {"manifests: [/nonexistent/dir]\n", ":1:12: key manifests"},
                                                        {"socket-group: no-such-group-x\n", ":1:15: key socket-group"},
                                                        {"listen: [\"tcp://10.1.2.3:1\"]\n", ":1:9: key listen"}}) {
    const std::string f = Write(text);
    ::testing::internal::CaptureStderr();
    const int rc = RunServe({"--config", f, "--state-dir", ""});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(rc, 2) << text;
    EXPECT_NE(err.find(absl::StrCat(f, where)), std::string::npos) << text << "\n" << err;
  }
}

// The packaged default file: as shipped (everything commented) it sets
// nothing; with every "#key: value" line uncommented it names every key once
// and each value is the default.
TEST_F(ServeConfig, DefaultFileParsesAndShowsTheDefaults) {
  const std::string path = std::string(NFTPROXY_SOURCE_DIR) + "/packaging/nftproxy.yaml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream text;
  text << in.rdbuf();
  const auto defaults = Resolve({});
  EXPECT_EQ(Resolve({"--config", path}), defaults);

  std::string uncommented;
  std::map<std::string, int> seen;
  const std::regex setting("^#([a-z][a-z0-9-]*):( .*)?$");
  std::string line;
  std::istringstream lines(text.str());
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_match(line, m, setting)) {
      ++seen[m[1]];
      uncommented += line.substr(1) + "\n";
    }
  }
  for (const std::string& key : ServeConfigKeys()) EXPECT_EQ(seen[key], 1) << key << " is not in " << path;
  EXPECT_EQ(seen.size(), ServeConfigKeys().size());
  const auto shown = Resolve({"--config", Write(uncommented)});
  // Built-in defaults that the flag table leaves empty, as the engine has them.
  const ResourceLimits limits;
  const EngineOptions engine;
  const std::map<std::string, std::string> engine_defaults = {
      {"max-ports-per-service", absl::StrCat(limits.ports_per_service)},
      {"max-addresses-per-service", absl::StrCat(limits.addresses_per_service)},
      {"max-endpoints-per-slice", absl::StrCat(limits.endpoints_per_slice)},
      {"max-ports-per-slice", absl::StrCat(limits.ports_per_slice)},
      {"max-labels", absl::StrCat(limits.labels_per_object)},
      {"max-watch-streams", absl::StrCat(engine.max_watch_streams)},
      {"watch-buffer-events", absl::StrCat(engine.watch_buffer_events)}};
  for (const auto& [key, value] : defaults) {
    auto e = engine_defaults.find(key);
    if (e != engine_defaults.end()) {
      EXPECT_EQ(value, V{""}) << key;
      EXPECT_EQ(shown.at(key), V{e->second}) << key;
    } else {
      EXPECT_EQ(shown.at(key), value) << key;
    }
  }
}

}  // namespace
}  // namespace nftproxy::server
