// nftproxy: one binary, subcommands. `serve` runs the server; everything else
// is a client of it.
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "server/serve.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help" ||
      std::string(argv[1]) == "help") {
    std::vector<std::string> help = {"--help"};
    return nftproxy::client::RunClient("help", help);
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "serve") return nftproxy::server::RunServe(args);
  return nftproxy::client::RunClient(command, args);
}
