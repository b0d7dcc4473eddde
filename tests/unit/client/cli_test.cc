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
    EXPECT_NE(r.out.find("(default table), name or jsonpath=TEMPLATE"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("{range .items[*]}...{end}"), std::string::npos) << r.out;
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
  // (was "expected table, wide, yaml, json": get now also prints name and jsonpath)
  EXPECT_EQ(r.err, "error: -o xml: expected table, wide, yaml, json, name, jsonpath=TEMPLATE\n"
                   "See 'nftproxy get --help'.\n");
  r = RunCli({"watch", "-o", "name"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: -o name: expected table, yaml, json\nSee 'nftproxy watch --help'.\n");
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

TEST(Cli, Version) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--version"}, {"--version", "--server", "http://bad"}, {"get", "--version"}}) {
    const Outcome r = RunCli(args);
    EXPECT_EQ(r.rc, kExitOk);
    EXPECT_EQ(r.out, std::string("nftproxy version ") + NFTPROXY_VERSION + "\n");
  }
  const Outcome r = RunCli({"version", "--client", "--server", "unix:///nonexistent"});
  EXPECT_EQ(r.rc, kExitOk);
  EXPECT_EQ(r.out, std::string("Client version: ") + NFTPROXY_VERSION + "\n");
}

TEST(Cli, ServerAndTimeoutAreCheckedBeforeConnecting) {
  Outcome r = RunCli({"get", "svc", "--server", "http://127.0.0.1:7070"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: --server \"http://127.0.0.1:7070\": http:// is not a scheme")) << r.err;
  r = RunCli({"status", "--server", "tcp://host:0"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_NE(r.err.find("is not a number from 1 to 65535"), std::string::npos) << r.err;
  r = RunCli({"status", "--request-timeout", "soon", "--server", "unix:///nonexistent"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: --request-timeout: \"soon\" is not a duration")) << r.err;
  // A socket path without a scheme is a unix socket: nobody there is "unreachable", not a DNS failure.
  r = RunCli({"status", "--server", "/nonexistent/nftproxy.sock", "--request-timeout", "2s"});
  EXPECT_EQ(r.rc, kExitUnreachable);
  EXPECT_TRUE(StartsWith(r.err, "error: cannot reach the nftproxy server at /nonexistent/nftproxy.sock: ")) << r.err;
  EXPECT_EQ(r.err.find("DNS"), std::string::npos) << r.err;
}

TEST(Cli, KubectlSpellings) {
  // --dry-run=VALUE, -oFORMAT and -nNS, checked before any server is asked.
  Outcome r = RunCli({"delete", "svc", "web", "--dry-run=maybe"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: --dry-run: expected server, client or none, got \"maybe\"\nSee 'nftproxy delete --help'.\n");
  r = RunCli({"get", "svc", "-oxml"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: -o xml: expected")) << r.err;
  r = RunCli({"explain", "--dry-run=server"});
  EXPECT_EQ(r.err, "error: explain does not take --dry-run\nSee 'nftproxy explain --help'.\n");
  r = RunCli({"get", "svc", "-o", "jsonpath={.items["});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: -o jsonpath: ")) << r.err;
  r = RunCli({"get", "svc", "web", "-l", "app=web"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_EQ(r.err, "error: give NAMEs or -l SELECTOR, not both\nSee 'nftproxy get --help'.\n");
  r = RunCli({"get", "svc", "-l", "app in (a)"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: -l: \"app in (a)\": set-based")) << r.err;
  r = RunCli({"get", "svc,pods"});
  EXPECT_EQ(r.rc, kExitBadInput);
  EXPECT_TRUE(StartsWith(r.err, "error: expected services, endpoints (endpointslices) or workloads")) << r.err;
  r = RunCli({"delete", "--ignore-not-found"});
  EXPECT_EQ(r.rc, kExitBadInput);
  r = RunCli({"describe", "svc", "x", "--ignore-not-found"});
  EXPECT_EQ(r.err, "error: describe does not take --ignore-not-found\nSee 'nftproxy describe --help'.\n");
}

TEST(Cli, Completion) {
  Outcome r = RunCli({"completion", "bash"});
  EXPECT_EQ(r.rc, kExitOk);
  EXPECT_NE(r.out.find("complete -F _nftproxy nftproxy"), std::string::npos);
  // Generated from the tables: every command, the kinds, get's formats.
  for (const char* word : {"apply delete get describe diff sync explain watch trace status version completion",
                           "services svc endpointslices eps endpoints workloads wl", "get) flags=",
                           "formats=\"table wide yaml json name jsonpath=\"", "--ignore-not-found", "--request-timeout"}) {
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
  }
  r = RunCli({"completion", "zsh"});
  EXPECT_EQ(r.rc, kExitOk);
  EXPECT_NE(r.out.find("bashcompinit"), std::string::npos);
  r = RunCli({"completion", "fish"});
  EXPECT_EQ(r.rc, kExitOk);
  EXPECT_NE(r.out.find("complete -c nftproxy -n '__fish_use_subcommand' -a get"), std::string::npos) << r.out;
  r = RunCli({"completion", "tcsh"});
  EXPECT_EQ(r.rc, kExitBadInput);
  r = RunCli({"completion"});
  EXPECT_EQ(r.rc, kExitBadInput);
}

}  // namespace
}  // namespace nftproxy::client
