#pragma once

#include <string>
#include <vector>

namespace nftproxy::client {

// Exit codes of client commands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // the server refused the change
inline constexpr int kExitDiffers = 1;      // `diff`: there are differences
inline constexpr int kExitBadInput = 2;     // invalid manifest, flag or field
inline constexpr int kExitUnreachable = 3;  // no server at --server

// `nftproxy [flags] <command> [args and flags]` for every command but
// `serve`: `args` are the arguments after the program name, and the first
// one that is not a flag is the command. With no command, or with `help`,
// prints the help.
int RunClient(const std::vector<std::string>& args);

}  // namespace nftproxy::client
