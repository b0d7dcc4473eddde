#include "server/listing.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nftproxy::server {

std::optional<Key> ListPage(const State& state, v1::Kind kind, const std::string& ns, const Key* after,
                            size_t max_items, size_t max_bytes,
                            const std::function<void(const Key&, const v1::Resource&)>& take) {
  size_t items = 0, bytes = 0;
  const Key* last = nullptr;
  // The matching keys of one kind are one range of the map when the
  // namespace is given; the kinds follow each other.
  for (const KindInfo& k : Kinds()) {
    if (kind != v1::KIND_UNSPECIFIED && k.kind != kind) continue;
    if (after != nullptr && k.kind < after->kind) continue;
    auto it = state.objects.lower_bound(Key{k.kind, ns, ""});
    if (after != nullptr && k.kind == after->kind) it = state.objects.upper_bound(*after);
    for (; it != state.objects.end() && it->first.kind == k.kind; ++it) {
      if (!ns.empty() && it->first.ns != ns) {
        if (it->first.ns > ns) break;
        continue;
      }
      if (last != nullptr && (items >= max_items || bytes >= max_bytes)) return *last;
      take(it->first, it->second);
      last = &it->first;
      ++items;
      bytes += it->second.ByteSizeLong();
    }
  }
  return std::nullopt;
}

namespace {

// What a token must be used with: the request's filters.
std::string Scope(const v1::ListRequest& req) { return absl::StrCat(req.kind(), "/", req.namespace_()); }

}  // namespace

std::string PageToken(const v1::ListRequest& req, const Key& last) {
  return absl::StrCat(absl::WebSafeBase64Escape(RefOf(last).SerializeAsString()), ".",
                      absl::WebSafeBase64Escape(Scope(req)));
}

absl::StatusOr<std::optional<Key>> ParsePageToken(const v1::ListRequest& req) {
  if (req.page_token().empty()) return std::optional<Key>();
  const std::vector<std::string> parts = absl::StrSplit(req.page_token(), '.');
  std::string ref_bytes, scope;
  v1::ResourceRef ref;
  if (parts.size() != 2 || !absl::WebSafeBase64Unescape(parts[0], &ref_bytes) ||
      !absl::WebSafeBase64Unescape(parts[1], &scope) || !ref.ParseFromString(ref_bytes)) {
    return absl::InvalidArgumentError("page_token: not a token this server made (pass next_page_token as it came)");
  }
  if (scope != Scope(req)) {
    return absl::InvalidArgumentError(
        "page_token: made for another kind or namespace (keep them as in the request that returned it)");
  }
  return std::optional<Key>(KeyOf(ref));
}

}  // namespace nftproxy::server
