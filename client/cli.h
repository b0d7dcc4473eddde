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

// `nftproxy <command> ...` for every command but `serve`.
int RunClient(const std::string& command, const std::vector<std::string>& args);

}  // namespace nftproxy::client
