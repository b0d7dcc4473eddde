// Appliance mode's directory watcher (server/manifest_dir.cc): which names
// are read, coalescing, the rescan's stability rule, and a real directory
// with inotify against a fake Sync.
#include "server/manifest_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/errors.h"
#include "common/resource.h"

namespace nftproxy::server {
namespace {

namespace fs = std::filesystem;

TEST(ManifestDirNames, OnlyManifestsAndNoEditorFiles) {
  for (const char* name : {"web.yaml", "web.yml", "web.json", "a.b.yaml", "x-1_2.yaml"}) {
    EXPECT_TRUE(IsManifestFileName(name)) << name;
  }
  for (const char* name : {".web.yaml", ".web.yaml.swp", "web.yaml.swp", "web.yaml.swx", "web.yaml~", "#web.yaml#",
                           ".#web.yaml", "web.yaml.tmp", "web.yaml.dpkg-new", "web.yaml.dpkg-old", "web.yaml.rpmnew",
                           "web.yaml.rpmsave", "web.yaml.bak", "web.txt", "web", "4913", "web.yaml.ucf-dist",
                           "web.dpkg-tmp.yaml"}) {
    EXPECT_FALSE(IsManifestFileName(name)) << name;
  }
  EXPECT_TRUE(IsIgnoredName(".git"));
  EXPECT_TRUE(IsIgnoredName("..data"));
  EXPECT_FALSE(IsIgnoredName("services"));
}

TEST(ManifestDirDebouncer, WaitsForQuietButNotForever) {
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1);
  Debouncer d(absl::Milliseconds(200), absl::Seconds(1));
  EXPECT_FALSE(d.Due(t0));
  d.Note(t0);
  d.Note(t0 + absl::Milliseconds(100));
  EXPECT_FALSE(d.Due(t0 + absl::Milliseconds(250)));  // 150 ms after the last
  EXPECT_TRUE(d.Due(t0 + absl::Milliseconds(300)));
  d.Clear();
  EXPECT_FALSE(d.Due(t0 + absl::Seconds(5)));
  // A steady stream of events: due 1 s after the first all the same.
  const absl::Time t1 = t0 + absl::Seconds(10);
  for (int i = 0; i < 20; ++i) {
    const absl::Time now = t1 + absl::Milliseconds(100 * i);
    EXPECT_EQ(d.Due(now), i >= 10) << i;
    d.Note(now);
  }
}

FileStat Stat(uint64_t size, int64_t mtime, uint64_t inode = 1) {
  FileStat s;
  s.size = size;
  s.mtime_ns = mtime;
  s.inode = inode;
  return s;
}

TEST(ManifestDirRescan, TakesOnlyFilesStableAcrossTwoLooks) {
  const DirListing taken = {{"a.yaml", Stat(10, 1)}};
  // Nothing changed.
  RescanDecision d = DecideRescan(taken, taken, taken);
  EXPECT_FALSE(d.read);
  EXPECT_TRUE(d.unsettled.empty());
  // A new file seen once: wait for a second look.
  d = DecideRescan(taken, taken, {{"a.yaml", Stat(10, 1)}, {"b.yaml", Stat(5, 2)}});
  EXPECT_FALSE(d.read);
  EXPECT_EQ(d.unsettled, std::set<std::string>{"b.yaml"});
  // Seen the same twice: read.
  const DirListing both = {{"a.yaml", Stat(10, 1)}, {"b.yaml", Stat(5, 2)}};
  d = DecideRescan(taken, both, both);
  EXPECT_TRUE(d.read);
  EXPECT_TRUE(d.unsettled.empty());
  // Still growing (size or mtime moved between the looks): not yet.
  d = DecideRescan(taken, both, {{"a.yaml", Stat(10, 1)}, {"b.yaml", Stat(9, 3)}});
  EXPECT_FALSE(d.read);
  EXPECT_EQ(d.unsettled, std::set<std::string>{"b.yaml"});
  // Replaced by a rename (same size and mtime, another inode): a change.
  d = DecideRescan(taken, {{"a.yaml", Stat(10, 1, 7)}}, {{"a.yaml", Stat(10, 1, 7)}});
  EXPECT_TRUE(d.read);
  // Removed, and still gone at the second look: read.
  d = DecideRescan(taken, {}, {});
  EXPECT_TRUE(d.read);
  d = DecideRescan(taken, taken, {});
  EXPECT_FALSE(d.read);
  EXPECT_EQ(d.unsettled, std::set<std::string>{"a.yaml"});
}

class TempTree {
 public:
  TempTree() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "manifest_dir.XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data());
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& rel, const std::string& text) {
    const fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  std::string path_;
};

std::string ServiceYaml(const std::string& name, const std::string& ip, int port = 80) {
  return absl::StrCat("kind: Service\nmetadata: {name: ", name, "}\nspec:\n  clusterIps: [\"", ip,
                      "\"]\n  ports: [{port: ", port, ", targetPort: 8080}]\n");
}

TEST(ManifestDirScan, SubdirectoriesLimitsAndPermissions) {
  TempTree t;
  t.Write("a.yaml", "");
  t.Write("sub/b.yml", "");
  t.Write("sub/deeper/c.json", "");
  t.Write(".git/d.yaml", "");
  t.Write("sub/.e.yaml.swp", "");
  t.Write("notes.txt", "");
  absl::StatusOr<ScanResult> s = ScanManifestDir(t.path(), {});
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<std::string> files;
  for (const auto& [f, st] : s->files) files.push_back(f);
  EXPECT_EQ(files, (std::vector<std::string>{"a.yaml", "sub/b.yml", "sub/deeper/c.json"}));
  EXPECT_TRUE(s->world_writable.empty());

  ManifestDirLimits few;
  few.max_files = 2;
  s = ScanManifestDir(t.path(), few);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
  EXPECT_NE(s.status().message().find("more than 2 manifest files"), std::string::npos) << s.status();
  ManifestDirLimits shallow;
  shallow.max_depth = 1;
  s = ScanManifestDir(t.path(), shallow);
  EXPECT_NE(s.status().message().find("sub/deeper: deeper than 1 levels"), std::string::npos) << s.status();

  ManifestDirLimits few_dirs;
  few_dirs.max_dirs = 2;
  s = ScanManifestDir(t.path(), few_dirs);
  EXPECT_NE(s.status().message().find("more than 2 directories"), std::string::npos) << s.status();

  chmod((t.path() + "/a.yaml").c_str(), 0666);
  s = ScanManifestDir(t.path(), {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->world_writable, std::vector<std::string>{"a.yaml"});
}

// A fake Sync that records every request.
class Recorder {
 public:
  ManifestDir::SyncFn Fn() {
    return [this](const v1::SyncRequest& req, v1::SyncResponse* resp) {
      absl::MutexLock l(&mu_);
      if (!refuse_.ok()) return refuse_;
      requests_.push_back(req);
      resp->set_revision(requests_.size());
      return absl::OkStatus();
    };
  }
  size_t count() {
    absl::MutexLock l(&mu_);
    return requests_.size();
  }
  v1::SyncRequest last() {
    absl::MutexLock l(&mu_);
    return requests_.back();
  }
  std::vector<std::string> LastNames() {
    std::vector<std::string> names;
    const v1::SyncRequest req = last();
    for (const v1::Resource& r : req.resources()) names.push_back(KeyOf(r).name);
    std::sort(names.begin(), names.end());
    return names;
  }
  void Refuse(absl::Status s) {
    absl::MutexLock l(&mu_);
    refuse_ = std::move(s);
  }
  // Waits until `n` requests were made (false after `timeout`).
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (count() >= n) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::SyncRequest> requests_;
  absl::Status refuse_;
};

bool WaitForStatus(const ManifestDir& d, const std::function<bool(const v1::ManifestDirStatus&)>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (absl::Now() < end) {
    if (ok(d.Status())) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

class ManifestDirWatch : public ::testing::Test {
 protected:
  void Start() {
    absl::StatusOr<std::string> root = ManifestDir::CheckRoot(tree_.path());
    ASSERT_TRUE(root.ok()) << root.status();
    dir_ = std::make_unique<ManifestDir>(*root, ManifestDirLimits{});
    dir_->quiet = absl::Milliseconds(50);
    dir_->rescan_interval = absl::Seconds(60);  // inotify alone, unless a test says otherwise
    dir_->Start(rec_.Fn());
  }
  TempTree tree_;
  Recorder rec_;
  std::unique_ptr<ManifestDir> dir_;
};

TEST_F(ManifestDirWatch, SyncsOnStartThenFollowsFilesAsOneSource) {
  tree_.Write("web.yaml", ServiceYaml("web", "198.19.0.10"));
  Start();
  ASSERT_EQ(rec_.count(), 1u);  // synced before Start returns
  EXPECT_EQ(rec_.last().source(), "dir:" + tree_.path());
  EXPECT_EQ(rec_.LastNames(), std::vector<std::string>{"web"});
  EXPECT_EQ(dir_->Status().files(), 1u);
  EXPECT_EQ(dir_->Status().resources(), 1u);
  EXPECT_EQ(dir_->Status().last_sync_revision(), 1u);

  // A new file in a new subdirectory.
  fs::create_directories(tree_.path() + "/team-a");
  absl::SleepFor(absl::Milliseconds(100));  // the subdirectory is watched
  tree_.Write("team-a/api.yaml", ServiceYaml("api", "198.19.0.11"));
  ASSERT_TRUE(rec_.WaitFor(2));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"api", "web"}));

  // Renamed into place.
  tree_.Write(".db.yaml.tmp", ServiceYaml("db", "198.19.0.12"));
  const size_t before = rec_.count();
  fs::rename(tree_.path() + "/.db.yaml.tmp", tree_.path() + "/db.yaml");
  ASSERT_TRUE(rec_.WaitFor(before + 1));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"api", "db", "web"}));

  // Removed.
  fs::remove(tree_.path() + "/web.yaml");
  ASSERT_TRUE(rec_.WaitFor(before + 2));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"api", "db"}));
}

TEST_F(ManifestDirWatch, BurstIsCoalescedAndEditorFilesIgnored) {
  Start();
  ASSERT_EQ(rec_.count(), 1u);
  for (int i = 0; i < 20; ++i) tree_.Write(absl::StrCat("s", i, ".yaml"), ServiceYaml(absl::StrCat("s", i),
                                                                                        absl::StrCat("198.19.1.", i + 1)));
  ASSERT_TRUE(rec_.WaitFor(2));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_LE(rec_.count(), 3u);  // one read for the burst (two if it straddled a quiet gap)
  EXPECT_EQ(rec_.last().resources_size(), 20);
  const size_t n = rec_.count();
  tree_.Write(".s1.yaml.swp", "garbage: [");
  tree_.Write("s1.yaml~", "garbage: [");
  tree_.Write("#s1.yaml#", "garbage: [");
  tree_.Write("README.txt", "hello");
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_EQ(rec_.count(), n);
  EXPECT_TRUE(dir_->Status().last_error().empty()) << dir_->Status().last_error();
}

TEST_F(ManifestDirWatch, HalfWrittenFileIsNeverRead) {
  tree_.Write("web.yaml", ServiceYaml("web", "198.19.0.10"));
  Start();
  // Half of a two-document file; the half alone is a valid manifest.
  const std::string path = tree_.path() + "/two.yaml";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  const std::string first = ServiceYaml("half", "198.19.0.20") + "---\n";
  ASSERT_EQ(write(fd, first.data(), first.size()), static_cast<ssize_t>(first.size()));
  // Another file changes meanwhile: the directory is read, without the half.
  const size_t n = rec_.count();
  tree_.Write("other.yaml", ServiceYaml("other", "198.19.0.21"));
  ASSERT_TRUE(rec_.WaitFor(n + 1));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"other", "web"}));
  // Now the rest, and close.
  const std::string rest = ServiceYaml("rest", "198.19.0.22");
  ASSERT_EQ(write(fd, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  const size_t m = rec_.count();
  close(fd);
  ASSERT_TRUE(rec_.WaitFor(m + 1));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"half", "other", "rest", "web"}));
}

TEST_F(ManifestDirWatch, BrokenDirectoryChangesNothingAndIsReported) {
  tree_.Write("web.yaml", ServiceYaml("web", "198.19.0.10"));
  Start();
  ASSERT_EQ(rec_.count(), 1u);
  // A YAML error.
  tree_.Write("sub/bad.yaml", ServiceYaml("ok", "198.19.0.30") + "---\nkind: Service\nmetadata: {name: x\n");
  ASSERT_TRUE(WaitForStatus(*dir_, [](const v1::ManifestDirStatus& s) { return !s.last_error().empty(); }));
  EXPECT_EQ(rec_.count(), 1u);  // nothing synced
  const std::string err = dir_->Status().last_error();
  EXPECT_NE(err.find(tree_.path() + "/sub/bad.yaml: document 2"), std::string::npos) << err;
  EXPECT_TRUE(dir_->Status().has_last_error_time());
  // An unknown field: named with its path.
  tree_.Write("sub/bad.yaml", "kind: Service\nmetadata: {name: x}\nspec: {clusterIP: 1.2.3.4}\n");
  ASSERT_TRUE(WaitForStatus(
      *dir_, [](const v1::ManifestDirStatus& s) { return absl::StrContains(s.last_error(), "spec.clusterIP"); }));
  EXPECT_EQ(rec_.count(), 1u);
  // Refused by the server (validation): placed in its file and document.
  rec_.Refuse(InvalidField(Key{v1::SERVICE, "default", "x"}, "spec.ports[0].port", "70000 is out of range"));
  tree_.Write("sub/bad.yaml", ServiceYaml("y", "198.19.0.31") + "---\n" + ServiceYaml("x", "198.19.0.32"));
  ASSERT_TRUE(WaitForStatus(*dir_, [](const v1::ManifestDirStatus& s) {
    return absl::StrContains(s.last_error(), "out of range");
  }));
  EXPECT_NE(dir_->Status().last_error().find(tree_.path() + "/sub/bad.yaml: document 2: service default/x: "
                                                            "spec.ports[0].port"),
            std::string::npos)
      << dir_->Status().last_error();
  EXPECT_EQ(dir_->Status().resources(), 1u);  // the last good state's
  // Fixed.
  rec_.Refuse(absl::OkStatus());
  tree_.Write("sub/bad.yaml", ServiceYaml("x", "198.19.0.32"));
  ASSERT_TRUE(WaitForStatus(*dir_, [](const v1::ManifestDirStatus& s) { return s.last_error().empty(); }));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"web", "x"}));
  EXPECT_EQ(dir_->Status().files(), 2u);
}

TEST_F(ManifestDirWatch, RescanTakesOnlyStableFiles) {
  // Without inotify (as after an overflow, or with no watches left): the
  // rescan alone, taking a changed file once two looks agree on it.
  tree_.Write("web.yaml", ServiceYaml("web", "198.19.0.10"));
  absl::StatusOr<std::string> root = ManifestDir::CheckRoot(tree_.path());
  ASSERT_TRUE(root.ok());
  ManifestDir d(*root, {});
  d.use_inotify = false;
  d.rescan_interval = absl::Milliseconds(300);
  d.unsettled_rescan_interval = absl::Milliseconds(300);
  d.Start(rec_.Fn());
  ASSERT_EQ(rec_.count(), 1u);
  // A file that keeps growing between looks is not taken.
  const std::string path = tree_.path() + "/grow.yaml";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  const std::string text = ServiceYaml("grow", "198.19.0.40") + "---\n" + ServiceYaml("grow2", "198.19.0.41");
  for (size_t i = 0; i < text.size(); i += 8) {
    ASSERT_GT(write(fd, text.data() + i, std::min<size_t>(8, text.size() - i)), 0);
    absl::SleepFor(absl::Milliseconds(40));  // the looks are 300 ms apart: each sees another size
    EXPECT_EQ(rec_.count(), 1u) << "read while growing, at byte " << i;
  }
  close(fd);
  // Stable now: taken within two or three looks, whole.
  ASSERT_TRUE(rec_.WaitFor(2, absl::Seconds(3)));
  EXPECT_EQ(rec_.LastNames(), (std::vector<std::string>{"grow", "grow2", "web"}));
  // Nothing changes: nothing is read.
  absl::SleepFor(absl::Milliseconds(700));
  EXPECT_EQ(rec_.count(), 2u);
  d.Stop();
}

TEST(ManifestDirRoot, MustBeADirectory) {
  EXPECT_FALSE(ManifestDir::CheckRoot("/nonexistent/manifests").ok());
  EXPECT_FALSE(ManifestDir::CheckRoot("/etc/hostname").ok());
  EXPECT_FALSE(ManifestDir::CheckRoot("").ok());
  absl::StatusOr<std::string> r = ManifestDir::CheckRoot("/etc/../etc/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/etc");
}

}  // namespace
}  // namespace nftproxy::server
