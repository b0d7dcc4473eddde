#include "common/id_files.h"

#include <grp.h>

#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nftproxy {

std::optional<uint32_t> LookupIdInFile(const std::string& file, absl::string_view name) {
  if (name.empty()) return std::nullopt;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    uint32_t id = 0;
    if (f.size() >= 3 && f[0] == name && absl::SimpleAtoi(f[2], &id)) return id;
  }
  return std::nullopt;
}

std::optional<uint32_t> LookupGroupId(absl::string_view name, const std::string& etc) {
  if (std::optional<uint32_t> id = LookupIdInFile(absl::StrCat(etc, "/group"), name)) return id;
#ifndef NFTPROXY_STATIC_BUILD
  // Not in the static binary: glibc's NSS would load shared modules there.
  if (const group* g = getgrnam(std::string(name).c_str()); g != nullptr) return g->gr_gid;
#endif
  return std::nullopt;
}

}  // namespace nftproxy
