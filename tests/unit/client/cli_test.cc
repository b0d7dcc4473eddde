// The command line before any call to the server: help, the command word
// among flags, flags a command does not take.
#include "client/cli.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nftproxy::client {
namespace {

struct Outcome {
  int rc;
  std::string out;
  std::string err;
};

Outcome RunCli(const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  Outcome r;
  r.rc = RunClient(args);
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST(Cli, Help) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {}, {"-h"}, {"--help"}, {"help"}, {"help", "--help"}}) {
    const Outcome r = RunCli(args);
    EXPECT_EQ(r.rc, kExitOk) << args.size();
    EXPECT_TRUE(StartsWith(r.out, "nftproxy: a service proxy on nftables")) << r.out;
    EXPECT_NE(r.out.find("default unix:///run/nftproxy/nftproxy.sock"), std::string::npos) << r.out;
  }
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"help", "get"}, {"-h", "get"}, {"get", "--help"},
                                             {"--server", "unix:///x", "get", "-h"}}) {
    const Outcome r = RunCli(args);
    EXPECT_EQ(r.rc, kExitOk);
    EXPECT_TRUE(StartsWith(r.out, "Usage: nftproxy get KIND [NAME]")) << r.out;
    EXPECT_NE(r.out.find("-o, --output FORMAT"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("output format: table, wide, yaml, json (default table)"), std::string::npos) << r.out;
  }
  const Outcome unknown = RunCli({"help", "bogus"});
  EXPECT_EQ(unknown.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(unknown.out, "nftproxy: a service proxy on nftables")) << unknown.out;
}

TEST(Cli, CommandWordAmongFlags) {
  // Global flags before the command, or after it: the same command.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--server", "unix:///x", "get", "services", "--source", "a"},
           {"--server=unix:///x", "get", "services", "--source", "a"},
           {"get", "services", "--server", "unix:///x", "--source", "a"}}) {
    const Outcome r = RunCli(args);
    EXPECT_EQ(r.rc, kExitBadInput);
    EXPECT_EQ(r.err, "error: get does not take --source\nSee 'nftproxy get --help'.\n");
  }
}

TEST(Cli, Errors) {
  Outcome r = RunCli({"--server", "unix:///x"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: no command given; see nftproxy --help\n");
  r = RunCli({"bogus", "-f", "x"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: unknown command \"bogus\"\n\nnftproxy: a service")) << r.err;
  r = RunCli({"get", "services", "--bogus"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: unknown flag --bogus\nSee 'nftproxy get --help'.\n");
  r = RunCli({"--bogus"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: unknown flag --bogus\nSee 'nftproxy --help'.\n");
  r = RunCli({"get", "services", "-o", "xml"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: -o xml: expected table, wide, yaml, json\nSee 'nftproxy get --help'.\n");
  r = RunCli({"get", "pods", "--server", "unix:///nonexistent"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: expected services, endpoints (endpointslices) or workloads")) << r.err;
  r = RunCli({"describe", "endpoints", "web", "--server", "unix:///nonexistent"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: describe shows services; for a endpointslice use: nftproxy get endpointslice web -o yaml"))
      << r.err;
  r = RunCli({"sync", "-f", "x.yaml", "--server", "unix:///nonexistent"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: --source NAME is required")) << r.err;
}

}  // namespace
}  // namespace nftproxy::client
