#include "server/file_store.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace nftproxy::server {

namespace {

constexpr char kSnapshotFile[] = "state.pb";
constexpr char kJournalFile[] = "state.journal";
// Every journal record starts with its length, a little-endian uint32.
constexpr size_t kLengthBytes = 4;

absl::Status ErrnoError(const char* what, const std::string& path, int err = errno) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", strerror(err)));
}

// Writes all of `data` at the file offset (the end, with O_APPEND). The first write() gets the whole buffer, so
// a journal group normally goes out in one call; looping covers short writes (a signal, a nearly full disk).
absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("writing", path);
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, const std::string& path, std::string* out) {
  out->clear();
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) out->reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("reading", path);
    }
    out->append(buf, static_cast<size_t>(n));
  }
}

// NotFound when the file does not exist.
absl::Status ReadFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    return ErrnoError("opening", path);
  }
  absl::Status s = ReadAll(fd, path, out);
  close(fd);
  return s;
}

// Makes a rename in the directory of `path` durable: without it the new name can be lost on power failure even
// though the file's data was fsynced.
absl::Status SyncDirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening", dir);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoError("syncing", dir, err);
}

// Readers see either the old file or the new one, never a partial one, and after a power failure the new one
// is there if this returned OK.
// Writes `data` to `path` (created or truncated) and fsyncs it.
absl::Status WriteSynced(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoError("writing", path);
  absl::Status s = WriteAll(fd, data, path);
  if (s.ok() && fsync(fd) != 0) s = ErrnoError("syncing", path);
  if (close(fd) != 0 && s.ok()) s = ErrnoError("writing", path);
  return s;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  if (absl::Status s = WriteSynced(tmp, data); !s.ok()) return s;
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("renaming", tmp);
  return SyncDirectoryOf(path);
}

// A v1::ListResponse holding every resource, written field by field rather
// than through a ListResponse message: the same bytes, without copying each
// resource into it.
std::string SerializeSnapshot(const State& state) {
  using google::protobuf::internal::WireFormatLite;
  size_t total = 0;
  std::vector<uint32_t> sizes;
  sizes.reserve(state.objects.size());
  for (const auto& [key, r] : state.objects) {
    const size_t n = r.ByteSizeLong();  // also caches the sizes for the write below
    sizes.push_back(static_cast<uint32_t>(n));
    total += 1 + google::protobuf::io::CodedOutputStream::VarintSize32(static_cast<uint32_t>(n)) + n;
  }
  if (state.revision != 0) total += 1 + google::protobuf::io::CodedOutputStream::VarintSize64(state.revision);
  std::string out;
  out.resize(total);
  uint8_t* p = reinterpret_cast<uint8_t*>(out.data());
  size_t i = 0;
  for (const auto& [key, r] : state.objects) {
    p = WireFormatLite::WriteTagToArray(v1::ListResponse::kResourcesFieldNumber,
                                        WireFormatLite::WIRETYPE_LENGTH_DELIMITED, p);
    p = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(sizes[i++], p);
    p = r.SerializeWithCachedSizesToArray(p);
  }
  if (state.revision != 0) {
    p = WireFormatLite::WriteUInt64ToArray(v1::ListResponse::kRevisionFieldNumber, state.revision, p);
  }
  return out;
}

absl::StatusOr<State> ParseSnapshot(const std::string& data, const std::string& path) {
  v1::ListResponse saved;
  if (!saved.ParseFromString(data)) {
    return absl::DataLossError(absl::StrCat(path, " is not a valid nftproxy state file"));
  }
  State state;
  state.revision = saved.revision();
  for (v1::Resource& r : *saved.mutable_resources()) {
    Key key = KeyOf(r);
    state.objects[std::move(key)] = std::move(r);
  }
  return state;
}

// Appends one journal record: the length, then the event.
absl::Status AppendRecord(const v1::WatchEvent& e, std::string* out) {
  const size_t n = e.ByteSizeLong();
  if (n > std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError(absl::StrCat("a journal record of ", n, " bytes is too large"));
  }
  const size_t at = out->size();
  out->resize(at + kLengthBytes + n);
  uint8_t* p = reinterpret_cast<uint8_t*>(&(*out)[at]);
  for (size_t i = 0; i < kLengthBytes; ++i) p[i] = static_cast<uint8_t>(n >> (8 * i));
  e.SerializeWithCachedSizesToArray(p + kLengthBytes);
  return absl::OkStatus();
}

void ApplyEvent(v1::WatchEvent& e, State* state) {
  Key key = KeyOf(e.resource());
  if (e.type() == v1::WatchEvent::DELETE) {
    state->objects.erase(key);
  } else {
    state->objects[std::move(key)] = std::move(*e.mutable_resource());
  }
}

// Replays the journal `data` onto *state: every group (events up to their BOOKMARK) with a revision greater
// than the snapshot's (state->revision on entry). *good_end receives the end of the last complete group; what
// follows it is a torn tail: a record running past the end, a partial length, a group without its BOOKMARK (the
// append was cut at a record boundary), or zeros (a file system that extended the file before the data reached
// the disk). Anything else that does not parse is DataLoss.
absl::Status ReplayJournal(const std::string& data, const std::string& path, State* state, uint64_t* good_end) {
  const uint64_t snapshot_revision = state->revision;
  std::vector<v1::WatchEvent> group;
  *good_end = 0;
  size_t off = 0;
  auto damaged = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": damaged record at byte ", off, ": ", what,
                                            "; the records before it are intact"));
  };
  while (data.size() - off >= kLengthBytes) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(data.data() + off);
    uint32_t len = 0;
    for (size_t i = 0; i < kLengthBytes; ++i) len |= static_cast<uint32_t>(p[i]) << (8 * i);
    const size_t left = data.size() - off - kLengthBytes;
    if (len > left) break;
    if (len > static_cast<uint32_t>(std::numeric_limits<int>::max())) return damaged("too long to parse");
    if (len == 0 && data.find_first_not_of('\0', off) == std::string::npos) break;
    v1::WatchEvent e;
    if (!e.ParseFromArray(p + kLengthBytes, static_cast<int>(len))) return damaged("not a WatchEvent");
    if (!group.empty() && e.revision() != group.front().revision()) {
      return damaged(absl::StrCat("revision ", e.revision(), " inside a group of revision ", group.front().revision()));
    }
    switch (e.type()) {
      case v1::WatchEvent::UPSERT:
      case v1::WatchEvent::DELETE:
        if (KindOf(e.resource()) == v1::KIND_UNSPECIFIED) return damaged("an event without a resource");
        group.push_back(std::move(e));
        break;
      case v1::WatchEvent::BOOKMARK:
        // The group is committed. Groups at or below the snapshot's revision are already in it (a crash between
        // writing the snapshot and truncating the journal).
        if (e.revision() > snapshot_revision) {
          for (v1::WatchEvent& g : group) ApplyEvent(g, state);
          state->revision = std::max(state->revision, e.revision());
        }
        group.clear();
        *good_end = off + kLengthBytes + len;
        break;
      default:
        return damaged(absl::StrCat("unknown event type ", static_cast<int>(e.type())));
    }
    off += kLengthBytes + len;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveState(const State& state, const std::string& path) {
  return WriteFileAtomically(path, SerializeSnapshot(state));
}

absl::StatusOr<State> LoadState(const std::string& path) {
  std::string data;
  if (absl::Status s = ReadFile(path, &data); !s.ok()) return s;
  return ParseSnapshot(data, path);
}

FileStateStore::FileStateStore(std::string dir, const Options& options)
    : options_(options), snapshot_path_(dir + "/" + kSnapshotFile), journal_path_(dir + "/" + kJournalFile) {}

FileStateStore::~FileStateStore() {
  if (journal_fd_ >= 0) close(journal_fd_);
}

absl::StatusOr<std::unique_ptr<FileStateStore>> FileStateStore::Open(const std::string& dir, State* loaded,
                                                             const Options& options) {
  std::unique_ptr<FileStateStore> store(new FileStateStore(dir, options));
  State state;
  std::string data;
  if (absl::Status s = ReadFile(store->snapshot_path_, &data); s.ok()) {
    absl::StatusOr<State> parsed = ParseSnapshot(data, store->snapshot_path_);
    if (!parsed.ok()) return parsed.status();
    state = std::move(*parsed);
    store->snapshot_bytes_ = data.size();
  } else if (!absl::IsNotFound(s)) {
    return s;
  }
  // O_APPEND: every write lands at the end, also after the compaction truncated the file.
  store->journal_fd_ = open(store->journal_path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (store->journal_fd_ < 0) return ErrnoError("opening", store->journal_path_);
  if (absl::Status s = ReadAll(store->journal_fd_, store->journal_path_, &data); !s.ok()) return s;
  const uint64_t size = data.size();
  uint64_t good_end = 0;
  if (absl::Status s = ReplayJournal(data, store->journal_path_, &state, &good_end); !s.ok()) return s;
  // Cut a torn tail off, or the next group would be appended after it and read as part of it.
  if (good_end < size && ftruncate(store->journal_fd_, static_cast<off_t>(good_end)) != 0) {
    return ErrnoError("truncating", store->journal_path_);
  }
  store->journal_bytes_ = good_end;
  store->revision_ = state.revision;
  *loaded = std::move(state);
  return store;
}

absl::Status FileStateStore::CheckRevision(uint64_t revision) const {
  if (revision >= revision_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("cannot save revision ", revision, " after revision ",
                                                    revision_, " in ", journal_path_));
}

absl::Status FileStateStore::Snapshot(const State& state) {
  return Publish(PrepareSnapshot(state));
}

FileStateStore::Pending FileStateStore::Prepare(const State& state, const std::vector<Key>& keys) const {
  Pending p;
  p.revision = state.revision;
  if (p.status = CheckRevision(state.revision); !p.status.ok()) return p;
  // A change to most of the state (a full sync) is cheaper written once as
  // a snapshot than journaled and then compacted.
  if (needs_snapshot_ || (keys.size() >= 1024 && keys.size() * 2 >= state.objects.size())) {
    return PrepareSnapshot(state);
  }
  v1::WatchEvent e;
  e.set_revision(state.revision);
  for (const Key& key : keys) {
    auto it = state.objects.find(key);
    const bool has = it != state.objects.end();
    e.set_type(has ? v1::WatchEvent::UPSERT : v1::WatchEvent::DELETE);
    *e.mutable_resource() = has ? it->second : ResourceOf(key);
    if (p.status = AppendRecord(e, &p.data); !p.status.ok()) return p;
  }
  e.clear_resource();
  e.set_type(v1::WatchEvent::BOOKMARK);
  p.status = AppendRecord(e, &p.data);
  // Compaction: past the threshold, the state is written as a snapshot after this group is appended.
  if (p.status.ok() && journal_bytes_ + p.data.size() > std::max<uint64_t>(options_.min_compact_bytes, snapshot_bytes_)) {
    return PrepareSnapshot(state);
  }
  return p;
}

FileStateStore::Pending FileStateStore::PrepareSnapshot(const State& state) const {
  Pending p;
  p.snapshot = true;
  p.revision = state.revision;
  if (p.status = CheckRevision(state.revision); !p.status.ok()) return p;
  p.data = SerializeSnapshot(state);
  p.status = WriteSynced(snapshot_path_ + ".tmp", p.data);
  return p;
}

absl::Status FileStateStore::Publish(Pending p) {
  if (!p.status.ok()) {
    Abandon(p);
    // The change is not on disk, so the journal alone would miss it: only a snapshot can bring the disk up to
    // date again. (A revision older than the saved one is the caller's mistake, not a lost change.)
    if (!absl::IsFailedPrecondition(p.status)) needs_snapshot_ = true;
    return p.status;
  }
  if (p.snapshot) {
    // On failure the journal is left as it was; it still describes the state together with the old snapshot (or
    // with the new one, if only the directory sync failed: load skips the groups the snapshot already holds).
    const std::string tmp = snapshot_path_ + ".tmp";
    if (rename(tmp.c_str(), snapshot_path_.c_str()) != 0) {
      absl::Status s = ErrnoError("renaming", tmp);
      Abandon(p);
      return s;
    }
    if (absl::Status s = SyncDirectoryOf(snapshot_path_); !s.ok()) return s;
    return SnapshotWritten(p);
  }
  if (absl::Status s = WriteAll(journal_fd_, p.data, journal_path_); !s.ok()) {
    // The journal now lacks this change, and may end in part of its group (ignored on load as a torn tail).
    // Only a snapshot can bring the disk up to date again; it also truncates the journal.
    needs_snapshot_ = true;
    return s;
  }
  journal_bytes_ += p.data.size();
  revision_ = p.revision;
  return absl::OkStatus();
}

void FileStateStore::Abandon(const Pending& p) {
  if (p.snapshot) unlink((snapshot_path_ + ".tmp").c_str());
}

absl::Status FileStateStore::SnapshotWritten(const Pending& p) {
  snapshot_bytes_ = p.data.size();
  revision_ = p.revision;
  // Only after the rename: a crash in between leaves groups at or below the snapshot's revision, which load skips.
  if (ftruncate(journal_fd_, 0) != 0) {
    // Appending after what may be a torn tail would make the journal unreadable; keep writing snapshots.
    needs_snapshot_ = true;
    return ErrnoError("truncating", journal_path_);
  }
  journal_bytes_ = 0;
  needs_snapshot_ = false;
  return absl::OkStatus();
}

}  // namespace nftproxy::server
