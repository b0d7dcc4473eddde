#include "client/cli.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "client/commands.h"
#include "client/completion.h"
#include "common/address.h"
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
      {nullptr, {"--request-timeout"}, nullptr, nullptr, &Options::request_timeout, nullptr},
      {nullptr, {"--tls-ca"}, nullptr, nullptr, &Options::tls_ca, nullptr},
      {nullptr, {"--tls-cert"}, nullptr, nullptr, &Options::tls_cert, nullptr},
      {nullptr, {"--tls-key"}, nullptr, nullptr, &Options::tls_key, nullptr},
      {nullptr, {"--tls-server-name"}, nullptr, nullptr, &Options::tls_server_name, nullptr},
      {nullptr, {"-h", "--help"}, nullptr, nullptr, nullptr, &Options::help},
      {nullptr, {"--version"}, nullptr, nullptr, nullptr, &Options::version},
      {"file", {"-f", "--filename"}, "-f, --filename PATH",
       "manifest file, directory (*.yaml, *.yml, *.json) or - for stdin", &Options::file, nullptr},
      {"ns", {"-n", "--namespace"}, "-n, --namespace NS", "namespace (default: \"default\"; lists: every namespace)",
       &Options::ns, nullptr},
      {"all", {"-A", "--all-namespaces"}, "-A, --all-namespaces",
       "list every namespace (the default when -n is not given)", nullptr, &Options::all_namespaces},
      {"output", {"-o", "--output"}, "-o, --output FORMAT", nullptr, &Options::output, nullptr},
      {"source", {"--source"}, "--source NAME",
       "the owner written into (and required to match) resources' metadata.source", &Options::source, nullptr},
      {"dry-run", {"--dry-run"}, "--dry-run[=server]",
       "validate and compile on the server, change nothing (=server and =client alike; =none: a real run)", nullptr,
       &Options::dry_run},
      {"selector", {"-l", "--selector"}, "-l, --selector SELECTOR",
       "only resources whose labels match: app=web,tier!=db, key (has it), !key (has not)", &Options::selector,
       nullptr},
      {"no-headers", {"--no-headers"}, "--no-headers", "tables without their header line", nullptr,
       &Options::no_headers},
      {"kernel", {"--kernel"}, "--kernel",
       "also read the table back from the kernel and list where it differs from what the server installed",
       nullptr, &Options::kernel},
      {"ignore", {"--ignore-not-found"}, "--ignore-not-found", "a NAME that does not exist is no error", nullptr,
       &Options::ignore_not_found},
      {"since", {"--since"}, "--since REVISION",
       "resume after this revision instead of starting with the current state", &Options::since, nullptr},
      {"client", {"--client"}, "--client", "print the client version only", nullptr, &Options::client_only},
      {"from", {"--from"}, "--from SRC", "trace packets from this address", &Options::trace_from, nullptr},
      {"to", {"--to"}, "--to VIP|NODEIP", "trace packets to this address (a service address, or a node address)",
       &Options::trace_to, nullptr},
      {"proto", {"--proto"}, "--proto tcp|udp|sctp", "the packets' protocol (default tcp)", &Options::trace_proto,
       nullptr},
      {"port", {"--port"}, "--port PORT", "the packets' destination port (the service port or node port)",
       &Options::trace_port, nullptr},
      {"duration", {"--duration"}, "--duration DURATION", "how long to trace (default 10s, at most 60s)",
       &Options::trace_duration, nullptr},
      {"count", {"--count"}, "--count N", "stop after N events (default 100)", &Options::trace_count, nullptr},
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
  int (Client::*run)(const Options&);  // null: runs without a server (completion)
  // For -o, listed after the others; "jsonpath=TEMPLATE" takes any template.
  std::vector<std::string> more_formats = {};
  // What the first argument is, for shell completion (completion.h).
  const char* first = "";
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
      {"delete", "delete (-f PATH | KIND NAME...) [-n NS] [--source NAME] [--dry-run] [--ignore-not-found]",
       "delete the resources named in PATH, or one resource",
       "Deletes, all or nothing. KIND is service, endpointslice (endpoints) or workload. A resource owned\n"
       "by another source is refused unless --source names that owner. With --dry-run the server checks\n"
       "that the delete would succeed and changes nothing.\n\n"
       "Examples:\n"
       "  nftproxy delete service web -n shop\n"
       "  nftproxy delete service web --dry-run\n"
       "  nftproxy delete -f web.yaml --ignore-not-found",
       {"file", "ns", "source", "dry-run", "ignore"}, {}, &Client::Delete, {}, "delete-kind"},
      {"get", "get KIND [NAME]... [-n NS | -A] [-l SELECTOR] [-o FORMAT] [--no-headers]",
       "list resources, or show some",
       "KIND is services (svc), endpoints (endpointslices, eps) or workloads (wl); several joined by commas,\n"
       "or all. Without -n, lists cover every namespace; a NAME is looked up in -n (default \"default\").\n"
       "Lists are read from the server a page (500 resources) at a time and printed as they come: a table\n"
       "keeps the column widths of its first page, widening a column when a later page needs it.\n"
       "yaml and json print manifests that `apply -f` reads back; name prints KIND/NAME.\n\n"
       "-o jsonpath=TEMPLATE prints fields of the JSON (a list is {\"kind\": \"List\", \"items\": [...]}),\n"
       "a subset of kubectl's JSONPath: {.metadata.name}, nested fields {.spec.ports[0].port}, every\n"
       "element {.items[*].metadata.name} (joined by spaces), a key with dots {.metadata.labels['a.b/c']},\n"
       "{range .items[*]}...{end}, strings {\"\\n\"}, the root {$} and the current element {@}. A missing\n"
       "field prints nothing; filters, slices and recursive descent are not supported.\n\n"
       "Examples:\n"
       "  nftproxy get services\n"
       "  nftproxy get svc,eps -n shop -o wide\n"
       "  nftproxy get services -l app=web,tier!=db -o name\n"
       "  nftproxy get service web -o yaml > web.yaml\n"
       "  nftproxy get svc -A -o jsonpath='{range .items[*]}{.metadata.name}{\"\\n\"}{end}'",
       {"ns", "all", "output", "selector", "no-headers", "ignore"}, {"table", "wide", "yaml", "json"}, &Client::Get,
       {"name", "jsonpath=TEMPLATE"}, "kind"},
      {"describe", "describe service NAME [-n NS]",
       "a service: its spec, its endpoints and the nftables objects that implement it",
       "Shows the service's fields, every endpoint with its conditions and weight (from its EndpointSlices,\n"
       "or from the workloads its selector picks), and the installed chains and map elements for it.\n\n"
       "Example:\n"
       "  nftproxy describe service web -n shop",
       {"ns"}, {}, &Client::Describe, {}, "service-kind"},
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
      {"explain", "explain [--kernel]", "print the installed nftables ruleset as nft text",
       "The table nftproxy owns, as the server last committed it: the rules and elements `nft list table`\n"
       "prints (nft lists chains, maps and elements in the kernel's order, which may differ). With --kernel\n"
       "the server also reads the table back from the kernel and first lists, as # comments, every chain,\n"
       "set and element where the kernel differs (someone changed the table; the server repairs such drift\n"
       "within a second). A write committed between the two reads shows as a difference: run it again.\n"
       "Exit code 0 when they are the same, 1 when they differ.\n\n"
       "Examples:\n"
       "  nftproxy explain\n"
       "  nftproxy explain --kernel",
       {"kernel"}, {}, &Client::Explain},
      {"watch", "watch [KIND] [-n NS] [--since REVISION] [-o table|yaml|json]",
       "stream changes as they are committed",
       "Prints the current resources, then every change as the server commits it, each with its revision,\n"
       "until interrupted. With --since, starts with the changes after that revision instead (a watch that\n"
       "ended can resume from the last revision it printed). json prints one WatchEvent per line.\n\n"
       "Examples:\n"
       "  nftproxy watch services -n shop\n"
       "  nftproxy watch --since 42 -o json",
       {"ns", "all", "since", "output"}, {"table", "yaml", "json"}, &Client::Watch, {}, "kind"},
      {"trace", "trace --from SRC --to VIP|NODEIP --port PORT [--proto tcp|udp|sctp] [--duration 10s] [--count N]",
       "show how the packets of one flow go through nftproxy's chains",
       "The server sets nftables' trace flag on the packets from SRC to VIP|NODEIP:PORT (a table of its own,\n"
       "inet <table>-trace, removed when the trace ends, also when this command is interrupted) and prints\n"
       "each packet's way through one hook of nftproxy's table, one line per event: the frontend that\n"
       "matched and its service, the ticket and the endpoint it DNATed to, masquerade, and the verdict\n"
       "(accepted, dropped or rejected, and by which rule). Only new connections pass the nat chains, so\n"
       "start the connection after the trace. Needs write access; one trace at a time. json prints one\n"
       "TraceEvent per line.\n\n"
       "Examples:\n"
       "  nftproxy trace --from 198.18.1.2 --to 198.19.0.10 --port 80\n"
       "  nftproxy trace --from 10.0.0.7 --to 192.168.1.10 --proto udp --port 30053 --duration 30s",
       {"from", "to", "proto", "port", "duration", "count", "output"}, {"text", "json"}, &Client::Trace},
      {"status", "status [-o yaml|json]", "server version, object counts, last sync time and duration, last error",
       "Example:\n"
       "  nftproxy status",
       {"output"}, {"text", "yaml", "json"}, &Client::Status},
      {"version", "version [--client]", "client and server versions",
       "`nftproxy --version` prints the client's version alone.\n\n"
       "Example:\n"
       "  nftproxy version",
       {"client"}, {}, &Client::Version},
      {"completion", "completion bash|zsh|fish", "print a shell completion script",
       "Completes commands, flags, kinds, output formats and, from the server on the command line,\n"
       "resource names.\n\n"
       "Examples:\n"
       "  source <(nftproxy completion bash)           # in ~/.bashrc\n"
       "  source <(nftproxy completion zsh)            # in ~/.zshrc\n"
       "  nftproxy completion fish | source            # in ~/.config/fish/config.fish\n"
       "  nftproxy completion bash > /etc/bash_completion.d/nftproxy",
       {}, {}, nullptr, {}, "shell"},
  };
  return commands;
}

std::string MainUsage() {
  std::string out =
      "nftproxy: a service proxy on nftables, driven over gRPC.\n\n"
      "Usage: nftproxy [--server ADDR] <command> [flags]\n\n"
      "Server:\n"
      "  serve                      run the server (see nftproxy serve --help)\n"
      "  state check|recover DIR    verify or recover a state directory offline\n\n"
      "Client commands:\n";
  for (const Command& c : Commands()) absl::StrAppend(&out, absl::StrFormat("  %-10s %s\n", c.name, c.summary));
  absl::StrAppend(&out,
                  "\nGlobal flags:\n"
                  "  --server ADDR    unix:///path or tcp://host:port (default ", kDefaultServer, ")\n"
                  "  --request-timeout DURATION\n"
                  "                   deadline of connecting and of each call (5s, 1m; 0: none;\n"
                  "                   default 20s to connect, 2m a call)\n"
                  "  --tls-ca FILE    TLS to a tcp:// server: the CAs of its certificate (PEM;\n"
                  "                   default the system's); env NFTPROXY_TLS_CA\n"
                  "  --tls-cert FILE, --tls-key FILE\n"
                  "                   a client certificate and key, for mutual TLS;\n"
                  "                   env NFTPROXY_TLS_CERT, NFTPROXY_TLS_KEY\n"
                  "  --tls-server-name NAME\n"
                  "                   the name the server's certificate carries, when not the\n"
                  "                   --server host; env NFTPROXY_TLS_SERVER_NAME\n"
                  "  -h, --help       help for a command: nftproxy <command> --help\n"
                  "  --version        the client's version\n\n"
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
      std::string help =
          f.help ? f.help : absl::StrCat("output format: ", absl::StrJoin(c.formats, ", "), " (default ", c.formats[0], ")");
      if (f.help == nullptr && !c.more_formats.empty()) {
        absl::StrAppend(&help, ", ", absl::StrJoin(c.more_formats.begin(), c.more_formats.end() - 1, ", "),
                        c.more_formats.size() > 1 ? " or " : "", c.more_formats.back());
      }
      absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", f.spelling, help));
    }
  }
  absl::StrAppend(&out, absl::StrFormat("  %-24s %s\n", "--server ADDR", "unix:///path or tcp://host:port"),
                  absl::StrFormat("  %-24s %s\n", "--request-timeout DUR", "deadline to connect and of each call (0: none)"),
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

namespace {

// kubectl spellings the flag parser does not take: --dry-run=server|client|none
// and a short flag glued to its value (-oyaml, -nshop).
absl::StatusOr<std::vector<std::string>> KubectlSpellings(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  bool flags_done = false;
  for (const std::string& arg : args) {
    if (flags_done || arg == "--") {
      flags_done = true;
      out.push_back(arg);
      continue;
    }
    if (absl::StartsWith(arg, "--dry-run=")) {
      const std::string v = arg.substr(10);
      if (v == "server" || v == "client" || v == "true") {
        // A client-side dry run could not tell what the server would refuse;
        // the server's dry run is what both mean here.
        out.push_back("--dry-run");
      } else if (v == "none" || v == "false") {
        out.push_back("--dry-run=false");
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--dry-run: expected server, client or none, got \"", v, "\""));
      }
      continue;
    }
    if (arg.size() > 2 && arg[0] == '-' && std::string("onlf").find(arg[1]) != std::string::npos && arg[2] != '=') {
      out.push_back(arg.substr(0, 2));
      out.push_back(arg.substr(2));
      continue;
    }
    out.push_back(arg);
  }
  return out;
}

bool OutputAllowed(const Command& c, const std::string& output) {
  if (std::find(c.formats.begin(), c.formats.end(), output) != c.formats.end()) return true;
  for (const std::string& f : c.more_formats) {
    if (output == f) return true;
    if (absl::EndsWith(f, "=TEMPLATE") && absl::StartsWith(output, f.substr(0, f.size() - 8))) return true;
  }
  return false;
}

CompletionSpec Completion() {
  CompletionSpec spec;
  for (const Flag& f : Flags()) {
    if (f.key == nullptr) spec.global_flags.insert(spec.global_flags.end(), f.names.begin(), f.names.end());
    if (f.value != nullptr) spec.value_flags.insert(spec.value_flags.end(), f.names.begin(), f.names.end());
  }
  for (const KindInfo& k : Kinds()) {
    spec.kinds.push_back(k.plural);
    spec.kinds.push_back(k.short_name);
    if (k.kind == v1::ENDPOINT_SLICE) spec.kinds.push_back("endpoints");
  }
  for (const Command& c : Commands()) {
    CompletionSpec::Command cc;
    cc.name = c.name;
    cc.summary = c.summary;
    cc.flags = spec.global_flags;
    for (const std::string& key : c.flags) {
      for (const Flag& f : Flags()) {
        if (f.key != nullptr && key == f.key) cc.flags.insert(cc.flags.end(), f.names.begin(), f.names.end());
      }
    }
    cc.formats = c.formats;
    for (const std::string& f : c.more_formats) {
      cc.formats.push_back(absl::EndsWith(f, "=TEMPLATE") ? f.substr(0, f.size() - 8) : f);
    }
    cc.first = c.first;
    spec.commands.push_back(std::move(cc));
  }
  return spec;
}

int RunCompletion(const Options& o) {
  if (o.positional.size() != 1) return Usage("completion", "expected one shell: bash, zsh or fish");
  absl::StatusOr<std::string> script = CompletionScript(o.positional[0], Completion());
  if (!script.ok()) return Usage("completion", std::string(script.status().message()));
  std::cout << *script;
  return kExitOk;
}

}  // namespace

int RunClient(const std::vector<std::string>& raw_args) {
  Options o;
  std::vector<std::string> positional;
  absl::StatusOr<std::vector<std::string>> spelled = KubectlSpellings(raw_args);
  const std::vector<std::string> args = spelled.ok() ? *spelled : raw_args;
  // One parse for global and command flags, so that they may stand on either
  // side of the command word; the parse error (or a bad kubectl spelling)
  // waits until the command is known.
  absl::Status parsed = ParseFlags(args, Specs(&o), &positional);
  if (!spelled.ok()) parsed = spelled.status();
  if (parsed.ok() && o.version && !o.help) {
    std::cout << "nftproxy version " << NFTPROXY_VERSION << "\n";
    return kExitOk;
  }
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
  if (!o.output.empty() && !OutputAllowed(*cmd, o.output)) {
    std::vector<std::string> all = cmd->formats;
    all.insert(all.end(), cmd->more_formats.begin(), cmd->more_formats.end());
    return Usage(command, absl::StrCat("-o ", o.output, ": expected ", absl::StrJoin(all, ", ")));
  }
  o.positional = std::move(positional);
  if (cmd->run == nullptr) return RunCompletion(o);
  absl::StatusOr<Address> address = ParseAddress(o.server);
  if (!address.ok()) return Usage(command, absl::StrCat("--server ", address.status().message()));
  if (!o.request_timeout.empty()) {
    absl::StatusOr<absl::Duration> timeout = ParseRequestTimeout(o.request_timeout);
    if (!timeout.ok()) return Usage(command, std::string(timeout.status().message()));
    o.call_timeout = o.connect_timeout = *timeout;
  }
  TlsOptions tls{o.tls_ca, o.tls_cert, o.tls_key, o.tls_server_name};
  tls.FromEnvironment();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewChannel(*address, tls);
  if (!channel.ok()) return Usage(command, std::string(channel.status().message()));
  Client client(o, std::move(*channel));
  return (client.*(cmd->run))(o);
}

}  // namespace nftproxy::client
