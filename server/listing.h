// Reading the desired state in pages, for List and for Watch's initial
// state: bounded work and memory per page whatever the state's size.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/state_store.h"

namespace nftproxy::server {

inline constexpr size_t kDefaultPageSize = 500;
inline constexpr size_t kMaxPageSize = 5000;
// A page stops once it holds this many bytes of resources, so that it fits
// the 4 MiB a gRPC client accepts by default.
inline constexpr size_t kMaxPageBytes = 3 << 20;

// Calls `take` for the resources of `state` of kind `kind` in namespace `ns`
// (unspecified / empty: any) that come after `after` in key order (null: from
// the first), at most `max_items` of them and no more once `max_bytes` of
// them were taken. Returns the last key taken when more may follow, nullopt
// when the listing is complete.
std::optional<Key> ListPage(const State& state, v1::Kind kind, const std::string& ns, const Key* after,
                            size_t max_items, size_t max_bytes,
                            const std::function<void(const Key&, const v1::Resource&)>& take);

// An opaque token that continues `req` after `last`, and back: the key to
// continue after (nullopt without a token); InvalidArgument for a token that
// is malformed or was made for another kind or namespace.
std::string PageToken(const v1::ListRequest& req, const Key& last);
absl::StatusOr<std::optional<Key>> ParsePageToken(const v1::ListRequest& req);

}  // namespace nftproxy::server
