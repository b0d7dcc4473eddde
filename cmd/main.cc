// nftproxy: one binary, subcommands. `serve` runs the server, `state` checks
// and recovers its state directory offline; everything else, help and the
// global flags included, is the client's to parse: one flag parser for every
// client argument, wherever it stands.
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "server/serve.h"
#include "server/state_check.h"

// Read by jemalloc (linked into this binary) at start: a background thread
// returns freed pages to the kernel about a second after a large sync, so
// the server's RSS falls back to what the installed state needs.
extern "C" const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  // The server's flags are its own (`serve --help`); client flags before
  // `serve` would be meaningless to it, so `serve` is only the first word.
  if (!args.empty() && args[0] == "serve") {
    return nftproxy::server::RunServe(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  if (!args.empty() && args[0] == "state") {
    return nftproxy::server::RunStateCommand(std::vector<std::string>(args.begin() + 1, args.end()), std::cout,
                                             std::cerr);
  }
  return nftproxy::client::RunClient(args);
}
