// Users and groups by name, read from /etc/passwd and /etc/group directly.
// The static binary has no NSS (glibc would need its shared modules at run
// time), so names are looked up in the files themselves, the same way in
// both builds; the default build also asks NSS (LDAP, sssd, ...) for a
// group the file does not know. One home for the parser: server/authz
// (user:NAME, group:NAME in a policy) and serve's --socket-group.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace nftproxy {

// NAME -> id from a file shaped like /etc/passwd or /etc/group
// (name:x:id:...); nullopt if the file cannot be read or has no such name.
std::optional<uint32_t> LookupIdInFile(const std::string& file, absl::string_view name);

// A group's id: `etc`/group first; in the default (dynamic) build NSS next.
std::optional<uint32_t> LookupGroupId(absl::string_view name, const std::string& etc = "/etc");

}  // namespace nftproxy
