#include "client/cli.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/commands.h"
#include "common/flags.h"

namespace nftproxy::client {
namespace {

// Every flag of the client commands. `key` is what a command lists to take
// the flag; global flags (no key) are taken by every command, before the
// command word or after it.
struct Flag {
  const char* key;
  std::vector<std::string> names;
  const char* spelling;  // in a command's help
  const char* help;      // null: -o, described by the command's formats
  std::string Options::*value;
  bool Options::*set;
};

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {nullptr, {"--server"}, nullptr, nullptr, &Options::server, nullptr},
      {nullptr, {"-h", "--help"}, nullptr, nullptr, nullptr, &Options::help},
      {"file", {"-f", "--filename"}, "-f, --filename PATH",
       "manifest file, directory (*.yaml, *.yml, *.json) or - for stdin", &Options::file, nullptr},
      {"ns", {"-n", "--namespace"}, "-n, --namespace NS", "namespace (default: \"default\"; lists: every namespace)",
       &Options::ns, nullptr},
      {"all", {"-A", "--all-namespaces"}, "-A, --all-namespaces",
       "list every namespace (the default when -n is not given)", nullptr, &Options::all_namespaces},
      {"output", {"-o", "--output"}, "-o, --output FORMAT", nullptr, &Options::output, nullptr},
      {"source", {"--source"}, "--source NAME",
       "the owner written into (and required to match) resources' metadata.source", &Options::source, nullptr},
      {"dry-run", {"--dry-run"}, "--dry-run", "validate and compile on the server, change nothing", nullptr,
       &Options::dry_run},
      {"since", {"--since"}, "--since REVISION",
       "resume after this revision instead of starting with the current state", &Options::since, nullptr},
      {"client", {"--client"}, "--client", "print the client version only", nullptr, &Options::client_only},
  };
  return flags;
}

std::vector<FlagSpec> Specs(Options* o) {
  std::vector<FlagSpec> specs;
  for (const Flag& f : Flags()) {
    FlagSpec spec;
    spec.names = f.names;
    if (f.value != nullptr) spec.value = &(o->*f.value);
    if (f.set != nullptr) spec.set = &(o->*f.set);
    specs.push_back(std::move(spec));
  }
  return specs;
}

// The flag spelled `name`; null for none.
const Flag* FlagNamed(const std::string& name) {
  for (const Flag& f : Flags()) {
    if (std::find(f.names.begin(), f.names.end(), name) != f.names.end()) return &f;
  }
  return nullptr;
}

struct Command {
  const char* name;
  const char* synopsis;
  const char* summary;
  const char* details;
  std::vector<std::string> flags;    // keys of Flags()
  std::vector<std::string> formats;  // for -o, the first is the default
  int (Client::*run)(const Options&);
};

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"apply", "apply -f PATH [-n NS] [--source NAME] [--dry-run]",
       "create or update the resources in PATH",
       "Creates or replaces every resource in PATH, all or nothing. PATH is a file, a directory (its *.yaml,\n"
       "*.yml and *.json files) or - for standard input; a file may hold several documents separated by ---.\n"
       "Documents are nftproxy's own resources (kind: Service, EndpointSlice, Workload) or Kubernetes' own\n"
       "v1 Service, v1 Endpoints and discovery.k8s.io/v1 EndpointSlice (also inside a kind: List).\n"
       "A resource owned by another source (metadata.source) is refused unless --source names that owner.\n\n"
       "Examples:\n"
       "  nftproxy apply -f web.yaml\n"
       "  kubectl get svc,endpointslices -n shop -o yaml | nftproxy apply -f -\n"
       "  nftproxy apply -f manifests/ --dry-run",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Apply},
      {"delete", "delete (-f PATH | KIND NAME) [-n NS] [--source NAME]",
       "delete the resources named in PATH, or one resource",
       "Deletes, all or nothing. KIND is service, endpointslice (endpoints) or workload. A resource owned\n"
       "by another source is refused unless --source names that owner.\n\n"
       "Examples:\n"
       "  nftproxy delete service web -n shop\n"
       "  nftproxy delete -f web.yaml",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Delete},
      {"get", "get KIND [NAME] [-n NS | -A] [-o table|wide|yaml|json]",
       "list resources, or show one",
       "KIND is services (svc), endpoints (endpointslices, eps) or workloads (wl). Without -n, lists cover\n"
       "every namespace; a NAME is looked up in -n (default \"default\"). yaml and json print manifests that\n"
       "`apply -f` reads back.\n\n"
       "Examples:\n"
       "  nftproxy get services\n"
       "  nftproxy get endpoints -n shop -o wide\n"
       "  nftproxy get service web -o yaml > web.yaml",
       {"ns", "all", "output"}, {"table", "wide", "yaml", "json"}, &Client::Get},
      {"describe", "describe service NAME [-n NS]",
       "a service: its spec, its endpoints and the nftables objects that implement it",
       "Shows the service's fields, every endpoint with its conditions and weight (from its EndpointSlices,\n"
       "or from the workloads its selector picks), and the installed chains and map elements for it.\n\n"
       "Example:\n"
       "  nftproxy describe service web -n shop",
       {"ns"}, {}, &Client::Describe},
      {"diff", "diff -f PATH [-n NS] [--source NAME]",
       "show what `apply -f PATH` would change, without changing anything",
       "The server validates the change (a dry run); each resource that would change is shown as a unified\n"
       "diff of its YAML, live against what would be stored. Exit status: 0 no differences, 1 differences,\n"
       "2 invalid input or a change the server would refuse, 3 server unreachable.\n\n"
       "Example:\n"
       "  nftproxy diff -f web.yaml",
       {"file", "ns", "source"}, {}, &Client::Diff},
      {"sync", "sync -f PATH --source NAME [-n NS] [--dry-run]",
       "make the resources of one source exactly those in PATH",
       "Replaces everything source NAME owns, all or nothing: resources of NAME missing from PATH are\n"
       "deleted, the others created or updated; other sources' resources are left alone, and one of theirs\n"
       "in PATH is a conflict. `-f /dev/null` deletes everything NAME owns.\n\n"
       "Example:\n"
       "  nftproxy sync -f /etc/nftproxy/services.d --source alice",
       {"file", "ns", "source", "dry-run"}, {}, &Client::Sync},
      {"explain", "explain", "print the installed nftables ruleset as nft text",
       "The table nftproxy owns, as the server last committed it: the rules and elements `nft list table`\n"
       "prints (nft lists chains, maps and elements in the kernel's order, which may differ).\n\n"
       "Example:\n"
       "  nftproxy explain",
       {}, {}, &Client::Explain},
      {"watch", "watch [KIND] [-n NS] [--since REVISION] [-o table|yaml|json]",
       "stream changes as they are committed",
       "Prints the current resources, then every change as the server commits it, each with its revision,\n"
       "until interrupted. With --since, starts with the changes after that revision instead (a watch that\n"
       "ended can resume from the last revision it printed). json prints one WatchEvent per line.\n\n"
       "Examples:\n"
       "  nftproxy watch services -n shop\n"
       "  nftproxy watch --since 42 -o json",
       {"ns", "all", "since", "output"}, {"table", "yaml", "json"}, &Client::Watch},
      {"status", "status [-o yaml|json]", "server version, object counts, last sync time and duration, last error",
       "Example:\n"
       "  nftproxy status",
       {"output"}, {"text", "yaml", "json"}, &Client::Status},
      {"version", "version [--client]", "client and server versions",
       "Example:\n"
       "  nftproxy version",
       {"client"}, {}, &Client::Version},
  };
  return commands;
}

std::string MainUsage() {
  std::string out =
      "nftproxy: a service proxy on nftables, driven over gRPC.\n\n"
      "Usage: nftproxy [--server ADDR] <command> [flags]\n\n"
      "Server:\n"
      "  serve                      run the server (see nftproxy serve --help)\n\n"
      "Client commands:\n";
  for (const Command& c : Commands()) absl::StrAppend(&out, absl::StrFormat("  %-10s %s\n", c.name, c.summary));
  absl::StrAppend(&out,
                  "\nGlobal flags:\n"
                  "  --server ADDR    unix:///path or tcp://host:port (default ", kDefaultServer, ")\n"
                  "  -h, --help       help for a command: nftproxy <command> --help\n\n"
                  "Exit status: 0 done, 1 refused by the server (diff: differences found), 2 invalid input,\n"
                  "3 server unreachable.\n\n"
                  "Examples:\n"
                  "  nftproxy apply -f web.yaml\n"
                  "  nftproxy get services -o wide\n"
                  "  nftproxy describe service web\n");
  return out;
}

std::string CommandUsage(const Command& c) {
  std::string out = absl::StrCat("Usage: nftproxy ", c.synopsis, "\n\n", c.summary, ".\n\n", c.details, "\n\nFlags:\n");
  for (const std::string& key : c.flags) {
    for (const Flag& f : Flags()) {
      if (f.key == nullptr || key != f.key) continue;
      const std::string help =
          f.help ? f.help : absl::StrCat("output format: ", absl::StrJoin(c.formats, ", "), " (default ", c.formats[0], ")");
      absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", f.spelling, help));
    }
  }
  absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", "--server ADDR", "unix:///path or tcp://host:port"),
                  absl::StrFormat("  %-24s %s\n", "-h, --help", "this help"));
  return out;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

}  // namespace

int Usage(const std::string& command, const std::string& why) {
  std::cerr << "error: " << why << "\nSee 'nftproxy " << command << " --help'.\n";
  return kExitBadInput;
}

int RunClient(const std::vector<std::string>& args) {
  Options o;
  std::vector<std::string> positional;
  // One parse for global and command flags, so that they may stand on either
  // side of the command word; the parse error waits until the command is known.
  const absl::Status parsed = ParseFlags(args, Specs(&o), &positional);
  if (positional.empty()) {
    if (!parsed.ok()) {
      std::cerr << "error: " << parsed.message() << "\nSee 'nftproxy --help'.\n";
      return kExitBadInput;
    }
    if (args.empty() || o.help) {
      std::cout << MainUsage();
      return kExitOk;
    }
    std::cerr << "error: no command given; see nftproxy --help\n";
    return kExitBadInput;
  }
  const std::string command = positional[0];
  positional.erase(positional.begin());
  if (command == "help") {
    // `nftproxy help get` is `nftproxy get --help`.
    if (!positional.empty()) {
      if (const Command* c = FindCommand(positional[0])) {
        std::cout << CommandUsage(*c);
        return kExitOk;
      }
    }
    std::cout << MainUsage();
    return positional.empty() ? kExitOk : kExitBadInput;
  }
  const Command* cmd = FindCommand(command);
  if (cmd == nullptr) {
    std::cerr << "error: unknown command \"" << command << "\"\n\n" << MainUsage();
    return kExitBadInput;
  }
  if (!parsed.ok()) return Usage(command, std::string(parsed.message()));
  if (o.help) {
    std::cout << CommandUsage(*cmd);
    return kExitOk;
  }
  // Flags this command does not take are errors, not silently ignored.
  for (const std::string& arg : args) {
    const std::string a = arg.substr(0, arg.find('='));
    if (a == "--") break;
    const Flag* f = FlagNamed(a);
    if (f != nullptr && f->key != nullptr && std::find(cmd->flags.begin(), cmd->flags.end(), f->key) == cmd->flags.end()) {
      return Usage(command, absl::StrCat(command, " does not take ", a));
    }
  }
  if (!o.output.empty() && std::find(cmd->formats.begin(), cmd->formats.end(), o.output) == cmd->formats.end()) {
    return Usage(command, absl::StrCat("-o ", o.output, ": expected ", absl::StrJoin(cmd->formats, ", ")));
  }
  o.positional = std::move(positional);
  Client client(o.server);
  return (client.*(cmd->run))(o);
}

}  // namespace nftproxy::client
