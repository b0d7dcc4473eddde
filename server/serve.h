#pragma once

#include <string>
#include <vector>

namespace nftproxy::server {

// `nftproxy serve [flags]`. Returns the process exit code.
int RunServe(const std::vector<std::string>& args);

}  // namespace nftproxy::server
