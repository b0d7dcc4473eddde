// nftproxy: one binary, subcommands. `serve` runs the server; everything else
// is a client of it.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "server/serve.h"

// Read by jemalloc (linked into this binary) at start: a background thread
// returns freed pages to the kernel about a second after a large sync, so
// the server's RSS falls back to what the installed state needs.
extern "C" const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help" ||
      std::string(argv[1]) == "help") {
    // `nftproxy help get` is `nftproxy get --help`.
    std::vector<std::string> help(argv + std::min(argc, 2), argv + argc);
    return nftproxy::client::RunClient("help", help);
  }
  // Global flags may come before the command: `nftproxy --server X get services`.
  std::vector<std::string> args;
  int i = 1;
  while (i < argc) {
    const std::string a = argv[i];
    if (a == "--server" && i + 1 < argc) {
      args.push_back(a);
      args.push_back(argv[i + 1]);
      i += 2;
    } else if (a.rfind("--server=", 0) == 0) {
      args.push_back(a);
      ++i;
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::cerr << "error: no command given; see nftproxy --help\n";
    return 2;
  }
  const std::string command = argv[i];
  args.insert(args.end(), argv + i + 1, argv + argc);
  if (command == "serve") return nftproxy::server::RunServe(args);
  return nftproxy::client::RunClient(command, args);
}
