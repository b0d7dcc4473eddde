#include "server/manifest_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/resource.h"
#include "manifest/manifest.h"

namespace nftproxy::server {
namespace {

constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_MODIFY |
                                IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

std::string Join(const std::string& dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

FileStat StatOf(const struct stat& st) {
  FileStat f;
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  f.inode = st.st_ino;
  f.dev = st.st_dev;
  f.world_writable = (st.st_mode & S_IWOTH) != 0;
  return f;
}

struct Walker {
  const std::string& root;
  const ManifestDirLimits& limits;
  ScanResult* out;

  absl::Status Walk(const std::string& rel, int depth) {
    const std::string path = rel.empty() ? root : absl::StrCat(root, "/", rel);
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read the directory: ", strerror(errno)));
    struct stat self;
    if (fstat(dirfd(d), &self) == 0 && (self.st_mode & S_IWOTH)) {  // sticky or not: others may add files
      out->world_writable.push_back(rel + "/");
    }
    out->dirs.push_back(rel);
    if (out->dirs.size() > limits.max_dirs) {
      closedir(d);
      return absl::InvalidArgumentError(absl::StrCat(
          root, ": more than ", limits.max_dirs, " directories (the limit of a manifest directory)"));
    }
    std::vector<std::string> subdirs;
    absl::Status status;
    errno = 0;
    while (dirent* e = readdir(d)) {
      const absl::string_view name = e->d_name;
      if (name == "." || name == ".." || IsIgnoredName(name)) continue;
      const std::string child = Join(rel, name);
      const std::string full = absl::StrCat(path, "/", name);
      struct stat st;
      if (lstat(full.c_str(), &st) != 0) continue;  // gone meanwhile
      if (S_ISLNK(st.st_mode)) {
        // Links to files are followed; links to directories are not (no loops).
        if (stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      }
      if (S_ISDIR(st.st_mode)) {
        subdirs.push_back(child);
        continue;
      }
      if (!S_ISREG(st.st_mode) || !IsManifestFileName(name)) continue;
      if (out->files.size() >= limits.max_files) {
        status = absl::InvalidArgumentError(absl::StrCat(
            root, ": more than ", limits.max_files, " manifest files (the limit of a manifest directory)"));
        break;
      }
      out->files[child] = StatOf(st);
      if (st.st_mode & S_IWOTH) out->world_writable.push_back(child);
    }
    closedir(d);
    if (!status.ok()) return status;
    for (const std::string& sub : subdirs) {
      if (depth + 1 > limits.max_depth) {
        return absl::InvalidArgumentError(absl::StrCat(root, "/", sub, ": deeper than ", limits.max_depth,
                                                       " levels of subdirectories (the limit of a manifest directory)"));
      }
      if (absl::Status s = Walk(sub, depth + 1); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

// The whole file, if it is at most `max` bytes; its stat as read.
absl::Status ReadFile(const std::string& path, uint64_t max, std::string* text, FileStat* stat) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::NotFoundError(absl::StrCat(path, ": not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", st.st_size, " bytes, more than the limit of ", max, " (--max-request-bytes)"));
  }
  text->clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", strerror(err)));
    }
    if (n == 0) break;
    text->append(buf, static_cast<size_t>(n));
    if (text->size() > max) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": more than the limit of ", max, " bytes (--max-request-bytes)"));
    }
  }
  fstat(fd, &st);
  close(fd);
  *stat = StatOf(st);
  return absl::OkStatus();
}

google::protobuf::Timestamp Stamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

}  // namespace

bool IsIgnoredName(absl::string_view name) {
  if (name.empty() || name[0] == '.' || name[0] == '#' || name.back() == '~' || name.back() == '#') return true;
  for (const char* suffix : {".swp", ".swx", ".swo", ".tmp", ".bak", ".orig", ".rpmnew", ".rpmsave", ".kate-swp"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return absl::StrContains(name, ".dpkg-") || absl::StrContains(name, ".ucf-");
}

bool IsManifestFileName(absl::string_view name) {
  if (IsIgnoredName(name)) return false;
  return absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") || absl::EndsWith(name, ".json");
}

absl::StatusOr<ScanResult> ScanManifestDir(const std::string& root, const ManifestDirLimits& limits) {
  ScanResult out;
  Walker w{root, limits, &out};
  if (absl::Status s = w.Walk("", 0); !s.ok()) return s;
  return out;
}

RescanDecision DecideRescan(const DirListing& taken, const DirListing& before, const DirListing& now) {
  RescanDecision d;
  auto find = [](const DirListing& l, const std::string& k) -> const FileStat* {
    auto it = l.find(k);
    return it == l.end() ? nullptr : &it->second;
  };
  std::set<std::string> keys;
  for (const auto& [k, v] : taken) keys.insert(k);
  for (const auto& [k, v] : now) keys.insert(k);
  for (const std::string& k : keys) {
    const FileStat* t = find(taken, k);
    const FileStat* n = find(now, k);
    if ((t == nullptr) == (n == nullptr) && (t == nullptr || *t == *n)) continue;  // unchanged
    const FileStat* b = find(before, k);
    const bool stable = (b == nullptr) == (n == nullptr) && (b == nullptr || *b == *n);
    if (stable) {
      d.read = true;
    } else {
      d.unsettled.insert(k);
    }
  }
  return d;
}

absl::StatusOr<std::string> ManifestDir::CheckRoot(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("\"\": want a directory");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(dir, ": ", ec.message()));
  std::string path = abs.lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": ", strerror(errno), " (want a directory of manifests)"));
  }
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(dir, ": not a directory"));
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return absl::InvalidArgumentError(absl::StrCat(dir, ": cannot read it: ", strerror(errno)));
  closedir(d);
  return path;
}

ManifestDir::ManifestDir(std::string root, ManifestDirLimits limits)
    : root_(std::move(root)), source_("dir:" + root_), limits_(limits) {
  absl::MutexLock l(&status_mu_);
  status_.set_path(root_);
  status_.set_source(source_);
}

ManifestDir::~ManifestDir() {
  Stop();
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void ManifestDir::Start(SyncFn sync) {
  sync_ = std::move(sync);
  // Watches first, so that nothing written during the first read is missed.
  inotify_fd_ = use_inotify ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
  if (inotify_fd_ < 0) {
    log::Warning("manifest directory: no inotify; changes are found by the rescan only",
                 {{"dir", root_}, {"error", strerror(errno)}, {"rescan", absl::FormatDuration(rescan_interval)}});
  } else if (!WatchTree("", 0)) {
    log::Warning("manifest directory: not every subdirectory could be watched; the rest is found by the rescan",
                 {{"dir", root_}, {"rescan", absl::FormatDuration(rescan_interval)}});
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  (void)ReadAndSync({}, /*force=*/true);  // an error is logged and kept in Status
  thread_ = std::thread([this] { Run(); });
}

void ManifestDir::Stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    return;
  }
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
}

bool ManifestDir::WatchTree(const std::string& rel, int depth) {
  if (inotify_fd_ < 0) return false;
  const std::string path = rel.empty() ? root_ : absl::StrCat(root_, "/", rel);
  if (watches_.size() >= limits_.max_dirs) return false;
  const int wd = inotify_add_watch(inotify_fd_, path.c_str(), kWatchMask);
  if (wd < 0) return errno == ENOENT || errno == ENOTDIR;  // gone meanwhile: no failure
  watches_[wd] = rel;
  bool ok = true;
  if (depth >= limits_.max_depth) return ok;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return ok;
  std::vector<std::string> subdirs;
  while (dirent* e = readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name == "." || name == ".." || IsIgnoredName(name)) continue;
    struct stat st;
    if (lstat(absl::StrCat(path, "/", name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      subdirs.push_back(Join(rel, name));
    }
  }
  closedir(d);
  for (const std::string& sub : subdirs) ok = WatchTree(sub, depth + 1) && ok;
  return ok;
}

void ManifestDir::NoteError(const std::string& error) {
  absl::MutexLock l(&status_mu_);
  if (status_.last_error() != error) {
    log::Error("manifest directory not applied; the last good state keeps serving",
               {{"dir", root_}, {"error", error}});
  }
  status_.set_last_error(error);
  *status_.mutable_last_error_time() = Stamp(absl::Now());
}

absl::Status ManifestDir::ReadAndSync(const std::set<std::string>& open_for_write, bool force) {
  absl::StatusOr<ScanResult> scan = ScanManifestDir(root_, limits_);
  if (!scan.ok()) {
    NoteError(std::string(scan.status().message()));
    return scan.status();
  }
  for (const std::string& w : scan->world_writable) {
    if (warned_.insert(w).second) {
      log::Warning("manifest directory: others may write here, and what they write is applied as this node's "
                   "services; remove the write permission for others",
                   {{"dir", root_}, {"path", w.empty() || w == "/" ? root_ : absl::StrCat(root_, "/", w)}});
    }
  }
  DirListing use;
  std::vector<std::pair<std::string, std::string>> texts;
  uint64_t total = 0;
  std::map<std::string, Cached> cache;
  for (const auto& [rel, st] : scan->files) {
    auto cached = cache_.find(rel);
    if (open_for_write.count(rel)) {
      if (cached == cache_.end()) continue;  // new and not yet closed: not there yet
      cache[rel] = cached->second;
    } else if (cached != cache_.end() && cached->second.stat == st) {
      cache[rel] = cached->second;
    } else {
      Cached c;
      absl::Status s = ReadFile(absl::StrCat(root_, "/", rel), limits_.max_file_bytes, &c.text, &c.stat);
      if (absl::IsNotFound(s)) continue;  // removed meanwhile: its event follows
      if (!s.ok()) {
        NoteError(std::string(s.message()));
        return s;
      }
      cache[rel] = std::move(c);
    }
    use[rel] = cache[rel].stat;
    total += cache[rel].stat.size;
    if (total > limits_.max_total_bytes) {
      absl::Status s = absl::InvalidArgumentError(absl::StrCat(
          root_, ": the manifests hold more than ", limits_.max_total_bytes, " bytes (--max-request-bytes)"));
      NoteError(std::string(s.message()));
      return s;
    }
  }
  cache_ = std::move(cache);
  if (!force && attempted_ && use == taken_) return absl::OkStatus();
  taken_ = use;
  attempted_ = true;
  for (const auto& [rel, c] : cache_) {
    if (use.count(rel)) texts.emplace_back(absl::StrCat(root_, "/", rel), c.text);
  }

  std::vector<manifest::ManifestDoc> docs;
  std::vector<std::string> warnings;
  absl::Status parsed = manifest::ForEachManifestInTexts(
      texts,
      [&](manifest::ManifestDoc d) {
        docs.push_back(std::move(d));
        return absl::OkStatus();
      },
      &warnings);
  for (const std::string& w : warnings) log::Warning("manifest directory", {{"dir", root_}, {"warning", w}});
  if (!parsed.ok()) {
    NoteError(std::string(parsed.message()));
    return parsed;
  }
  v1::SyncRequest req;
  req.set_source(source_);
  for (manifest::ManifestDoc& d : docs) *req.add_resources() = d.resource;
  v1::SyncResponse resp;
  absl::Status s = sync_ ? sync_(req, &resp) : absl::FailedPreconditionError("not started");
  if (!s.ok()) {
    std::string where;
    if (std::optional<v1::ErrorDetail> detail = ErrorDetailOf(s); detail && detail->has_resource()) {
      Key key = KeyOf(detail->resource());
      if (key.ns.empty()) key.ns = "default";
      for (const manifest::ManifestDoc& d : docs) {
        Key k = KeyOf(d.resource);
        if (k.ns.empty()) k.ns = "default";
        if (k == key) {
          where = absl::StrCat(manifest::DocumentPlace(d), ": ");
          break;
        }
      }
    }
    NoteError(absl::StrCat(where, s.message()));
    return s;
  }
  const int changes = resp.created_size() + resp.configured_size() + resp.deleted_size();
  {
    absl::MutexLock l(&status_mu_);
    if (!status_.last_error().empty()) log::Info("manifest directory fixed and applied", {{"dir", root_}});
    status_.set_last_sync_revision(resp.revision());
    *status_.mutable_last_good_time() = Stamp(absl::Now());
    status_.clear_last_error();
    status_.clear_last_error_time();
    status_.set_files(static_cast<uint32_t>(use.size()));
    status_.set_resources(static_cast<uint32_t>(docs.size()));
  }
  if (changes > 0 || force) {
    log::Info("manifest directory synced",
              {{"dir", root_},
               {"revision", absl::StrCat(resp.revision())},
               {"files", absl::StrCat(use.size())},
               {"created", absl::StrCat(resp.created_size())},
               {"configured", absl::StrCat(resp.configured_size())},
               {"deleted", absl::StrCat(resp.deleted_size())}});
  }
  return absl::OkStatus();
}

void ManifestDir::HandleEvents(std::set<std::string>* open_for_write, bool* changed, bool* overflow) {
  alignas(inotify_event) char buf[64 * 1024];
  for (;;) {
    const ssize_t n = read(inotify_fd_, buf, sizeof(buf));
    if (n <= 0) return;  // EAGAIN: all read
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        *overflow = true;
        *changed = true;
        continue;
      }
      auto w = watches_.find(ev->wd);
      if (w == watches_.end()) continue;
      if (ev->mask & IN_IGNORED) {
        watches_.erase(w);
        continue;
      }
      if (ev->len == 0) {
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) *changed = true;
        continue;
      }
      const absl::string_view name(ev->name);
      const std::string rel = Join(w->second, name);
      if (ev->mask & IN_ISDIR) {
        if (IsIgnoredName(name)) continue;
        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
          const int depth = static_cast<int>(std::count(rel.begin(), rel.end(), '/')) + 1;
          if (depth <= limits_.max_depth && !WatchTree(rel, depth)) {
            log::Warning("manifest directory: a subdirectory could not be watched; it is found by the rescan",
                         {{"dir", root_}, {"path", rel}});
          }
          // What was written into it before the watch was there is not known
          // to be closed: the rescan takes it once it is stable.
          ManifestDirLimits sub = limits_;
          if (absl::StatusOr<ScanResult> s = ScanManifestDir(absl::StrCat(root_, "/", rel), sub); s.ok()) {
            for (const auto& [f, st] : s->files) unverified_[Join(rel, f)] = st;
          }
        }
        *changed = true;
        continue;
      }
      if (!IsManifestFileName(name)) continue;
      if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)) {
        open_for_write->erase(rel);
        unverified_.erase(rel);
        *changed = true;
        continue;
      }
      if (ev->mask & IN_CREATE) {
        // A symlink or hard link is complete when it appears; a new file is
        // not until it is closed.
        struct stat st;
        const std::string full = absl::StrCat(root_, "/", rel);
        if (lstat(full.c_str(), &st) == 0 && (S_ISLNK(st.st_mode) || st.st_nlink > 1)) {
          *changed = true;
          continue;
        }
      }
      if (ev->mask & (IN_CREATE | IN_MODIFY)) open_for_write->insert(rel);
    }
  }
}

void ManifestDir::Run() {
  Debouncer debounce(quiet, max_delay);
  std::set<std::string> open_for_write;
  DirListing last_look;
  absl::Time next_rescan = absl::Now() + rescan_interval;
  while (!stopping_.load()) {
    absl::Time now = absl::Now();
    absl::Time wake = next_rescan;
    if (debounce.pending()) wake = std::min(wake, debounce.deadline());
    const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(wake - now) + 1);
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    const int r = poll(fds, inotify_fd_ >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(ms, 60000)));
    if (stopping_.load()) break;
    now = absl::Now();
    if (r > 0 && inotify_fd_ >= 0 && (fds[1].revents & POLLIN)) {
      bool changed = false, overflow = false;
      HandleEvents(&open_for_write, &changed, &overflow);
      if (overflow) {
        // Events were lost: which files are closed is not known any more.
        // They are taken once the rescan finds them stable; watches are
        // added for directories that may have been missed.
        log::Warning("manifest directory: inotify queue overflowed; rescanning", {{"dir", root_}});
        for (const std::string& f : open_for_write) unverified_[f] = FileStat{};  // a look that matches nothing
        open_for_write.clear();
        WatchTree("", 0);
        next_rescan = now;
      }
      if (changed) debounce.Note(now);
    }
    if (debounce.Due(now)) {
      debounce.Clear();
      // Unverified files left: look again once it is quiet.
      if (Reverify()) debounce.Note(now);
      (void)ReadAndSync(HeldBack(open_for_write));
    }
    if (now >= next_rescan) {
      absl::StatusOr<ScanResult> look = ScanManifestDir(root_, limits_);
      if (!look.ok()) {
        NoteError(std::string(look.status().message()));
        next_rescan = now + rescan_interval;
        continue;
      }
      RescanDecision d = DecideRescan(taken_, last_look, look->files);
      Reverify();
      // Directories the watches missed (made while the queue overflowed, or
      // when watches ran out) are watched now.
      if (inotify_fd_ >= 0) {
        std::set<std::string> watched;
        for (const auto& [wd, rel] : watches_) watched.insert(rel);
        for (const std::string& dir : look->dirs) {
          if (!watched.count(dir)) WatchTree(dir, static_cast<int>(std::count(dir.begin(), dir.end(), '/')) + 1);
        }
      }
      if (d.read) {
        std::set<std::string> hold = HeldBack(open_for_write);
        hold.insert(d.unsettled.begin(), d.unsettled.end());
        (void)ReadAndSync(hold);
      }
      last_look = std::move(look->files);
      next_rescan = now + (d.unsettled.empty() && unverified_.empty() ? rescan_interval : unsettled_rescan_interval);
    }
  }
}

bool ManifestDir::Reverify() {
  for (auto it = unverified_.begin(); it != unverified_.end();) {
    struct stat st;
    if (stat(absl::StrCat(root_, "/", it->first).c_str(), &st) != 0) {
      it = unverified_.erase(it);  // gone
      continue;
    }
    const FileStat now = StatOf(st);
    if (now == it->second) {
      it = unverified_.erase(it);
      continue;
    }
    it->second = now;
    ++it;
  }
  return !unverified_.empty();
}

std::set<std::string> ManifestDir::HeldBack(const std::set<std::string>& open_for_write) const {
  std::set<std::string> hold = open_for_write;
  for (const auto& [f, st] : unverified_) hold.insert(f);
  return hold;
}

v1::ManifestDirStatus ManifestDir::Status() const {
  absl::MutexLock l(&status_mu_);
  return status_;
}

}  // namespace nftproxy::server
