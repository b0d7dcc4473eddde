#include "server/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace nftproxy::server {

const char* KindName(v1::Kind kind) {
  switch (kind) {
    case v1::SERVICE: return "service";
    case v1::ENDPOINT_SLICE: return "endpointslice";
    case v1::WORKLOAD: return "workload";
    default: return "resource";
  }
}

std::string Describe(const Key& key) {
  return absl::StrCat(KindName(key.kind), " ", key.ns, "/", key.name);
}

v1::Kind KindOf(const v1::Resource& r) {
  switch (r.kind_case()) {
    case v1::Resource::kService: return v1::SERVICE;
    case v1::Resource::kEndpointSlice: return v1::ENDPOINT_SLICE;
    case v1::Resource::kWorkload: return v1::WORKLOAD;
    default: return v1::KIND_UNSPECIFIED;
  }
}

const v1::ObjectMeta& MetaOf(const v1::Resource& r) {
  switch (r.kind_case()) {
    case v1::Resource::kService: return r.service().metadata();
    case v1::Resource::kEndpointSlice: return r.endpoint_slice().metadata();
    case v1::Resource::kWorkload: return r.workload().metadata();
    default: return v1::ObjectMeta::default_instance();
  }
}

v1::ObjectMeta* MutableMetaOf(v1::Resource* r) {
  switch (r->kind_case()) {
    case v1::Resource::kService: return r->mutable_service()->mutable_metadata();
    case v1::Resource::kEndpointSlice: return r->mutable_endpoint_slice()->mutable_metadata();
    case v1::Resource::kWorkload: return r->mutable_workload()->mutable_metadata();
    default: return nullptr;
  }
}

Key KeyOf(const v1::Resource& r) {
  const v1::ObjectMeta& m = MetaOf(r);
  return Key{KindOf(r), m.namespace_().empty() ? kDefaultNamespace : m.namespace_(), m.name()};
}

Key KeyOf(const v1::ResourceRef& ref) {
  return Key{ref.kind(), ref.namespace_().empty() ? kDefaultNamespace : ref.namespace_(),
             ref.name()};
}

std::vector<v1::WatchEvent> DiffStates(const State& before, const State& after,
                                       const std::vector<Key>& keys) {
  std::vector<v1::WatchEvent> events;
  for (const Key& key : keys) {
    auto b = before.objects.find(key);
    auto a = after.objects.find(key);
    const bool had = b != before.objects.end();
    const bool has = a != after.objects.end();
    if (!has && !had) continue;
    if (has && had && MetaOf(a->second).resource_version() == MetaOf(b->second).resource_version()) continue;
    v1::WatchEvent e;
    e.set_type(has ? v1::WatchEvent::UPSERT : v1::WatchEvent::DELETE);
    *e.mutable_resource() = has ? a->second : b->second;
    e.set_revision(after.revision);
    events.push_back(std::move(e));
  }
  return events;
}

void ChangeLog::Reset(uint64_t revision) {
  events_.clear();
  compacted_ = revision;
}

void ChangeLog::Append(std::vector<v1::WatchEvent> events) {
  for (v1::WatchEvent& e : events) events_.push_back(std::move(e));
  if (events_.empty()) return;
  const uint64_t newest = events_.back().revision();
  while (events_.size() > capacity_ && events_.front().revision() < newest) {
    compacted_ = std::max(compacted_, events_.front().revision());
    events_.pop_front();
  }
}

absl::Status ChangeLog::Since(uint64_t since, std::vector<v1::WatchEvent>* out) const {
  if (since < compacted_) {
    return absl::OutOfRangeError(absl::StrCat(
        "revision ", since, " is too old: the server keeps changes after revision ", compacted_,
        " only; list the resources again (or watch from revision 0) and resume from the revision that returns"));
  }
  auto it = std::upper_bound(events_.begin(), events_.end(), since,
                             [](uint64_t rev, const v1::WatchEvent& e) { return rev < e.revision(); });
  out->insert(out->end(), it, events_.end());
  return absl::OkStatus();
}

absl::Status SaveState(const State& state, const std::string& path) {
  v1::ListResponse out;
  out.set_revision(state.revision);
  for (const auto& [key, r] : state.objects) *out.add_resources() = r;
  std::string data;
  out.SerializeToString(&data);
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(errno)));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<State> LoadState(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  std::stringstream ss;
  ss << in.rdbuf();
  v1::ListResponse saved;
  if (!saved.ParseFromString(ss.str())) {
    return absl::DataLossError(absl::StrCat(path, " is not a valid nftproxy state file"));
  }
  State state;
  state.revision = saved.revision();
  for (const v1::Resource& r : saved.resources()) state.objects[KeyOf(r)] = r;
  return state;
}

}  // namespace nftproxy::server
