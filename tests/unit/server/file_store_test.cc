// FileStateStore: snapshot + journal round trips, compaction, the file format, torn tails (recovered) and every
// other kind of damage (refused, files untouched), format 1 directories (loaded, upgraded).
#include "server/file_store.h"

#include <fcntl.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/crc32c.h"

namespace nftproxy::server {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class FileStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nftproxy-store-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string journal() const { return dir_ + "/state.journal"; }
  std::string snapshot() const { return dir_ + "/state.pb"; }

  std::unique_ptr<FileStateStore> Open(State* loaded, FileStateStore::Options options = {}) {
    auto store = FileStateStore::Open(dir_, loaded, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  State Reopen() {
    State loaded;
    EXPECT_NE(Open(&loaded), nullptr);
    return loaded;
  }

  std::string dir_;
};

v1::Resource Service(const std::string& ns, const std::string& name, int port, uint64_t version) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("service { metadata { namespace: '", ns, "' name: '", name, "' resource_version: ", version,
                   " labels { key: 'app' value: '", name, "' } labels { key: 'tier' value: 'web' } }",
                   " spec { cluster_ips: '198.19.0.10' ports { protocol: TCP port: ", port,
                   " target_port: 8080 } selector { key: 'app' value: '", name, "' } } }"),
      &r));
  return r;
}

v1::Resource Slice(const std::string& name, const std::string& address) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("endpoint_slice { metadata { namespace: 'default' name: '", name,
                   "' } service_name: 'web' ports { protocol: TCP port: 8080 } endpoints { addresses: '", address,
                   "' conditions { ready: true } } }"),
      &r));
  return r;
}

std::string Bytes(const google::protobuf::MessageLite& m) { return DeterministicBytes(m); }

void ExpectSameState(const State& got, const State& want) {
  EXPECT_EQ(got.revision, want.revision);
  ASSERT_EQ(got.objects.size(), want.objects.size());
  for (auto g = got.objects.begin(), w = want.objects.begin(); w != want.objects.end(); ++g, ++w) {
    EXPECT_EQ(g->first, w->first) << Describe(g->first) << " vs " << Describe(w->first);
    EXPECT_EQ(Bytes(g->second), Bytes(w->second)) << Describe(w->first);
  }
}

// Commits one change to `state` (the way the server does: a new revision, the touched keys) and records it.
void Commit(FileStateStore* store, State* state, const std::vector<v1::Resource>& upserts,
            const std::vector<Key>& deletes = {}) {
  std::vector<Key> keys;
  ++state->revision;
  for (const v1::Resource& r : upserts) {
    state->objects[KeyOf(r)] = r;
    keys.push_back(KeyOf(r));
  }
  for (const Key& k : deletes) {
    state->objects.erase(k);
    keys.push_back(k);
  }
  absl::Status s = store->Record(*state, keys);
  EXPECT_TRUE(s.ok()) << s;
}

uint64_t FileSize(const std::string& path) { return fs::exists(path) ? fs::file_size(path) : 0; }

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

uint32_t Le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(s[at + i])) << (8 * i);
  return v;
}
uint64_t Le64(const std::string& s, size_t at) {
  return Le32(s, at) | static_cast<uint64_t>(Le32(s, at + 4)) << 32;
}
void PutLe32(std::string* s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}

// The groups of a format 2 journal, read the way a person with the spec in file_store.h would.
struct GroupAt {
  size_t offset;
  size_t end;
  uint64_t revision;
  uint64_t previous;
};
std::vector<GroupAt> GroupsOf(const std::string& journal) {
  std::vector<GroupAt> out;
  for (size_t off = kJournalHeaderBytes; off + kGroupHeaderBytes <= journal.size();) {
    const size_t end = off + kGroupHeaderBytes + Le32(journal, off + 4);
    out.push_back({off, end, Le64(journal, off + 8), Le64(journal, off + 16)});
    off = end;
  }
  return out;
}

// Format 1, as the previous nftproxy wrote it: a bare ListResponse, and records of a size and a WatchEvent with
// a BOOKMARK ending each group.
std::string V1Snapshot(const State& state) {
  v1::ListResponse list;
  list.set_revision(state.revision);
  for (const auto& [key, r] : state.objects) *list.add_resources() = r;
  return list.SerializeAsString();
}
std::string V1Record(const v1::WatchEvent& e) {
  std::string out(4, '\0');
  const std::string body = e.SerializeAsString();
  PutLe32(&out, 0, static_cast<uint32_t>(body.size()));
  return out + body;
}
std::string V1Group(uint64_t revision, const std::vector<v1::Resource>& upserts, const std::vector<Key>& deletes = {}) {
  std::string out;
  v1::WatchEvent e;
  e.set_revision(revision);
  for (const v1::Resource& r : upserts) {
    e.set_type(v1::WatchEvent::UPSERT);
    *e.mutable_resource() = r;
    out += V1Record(e);
  }
  for (const Key& k : deletes) {
    e.set_type(v1::WatchEvent::DELETE);
    *e.mutable_resource() = ResourceOf(k);
    out += V1Record(e);
  }
  e.clear_resource();
  e.set_type(v1::WatchEvent::BOOKMARK);
  return out + V1Record(e);
}

// Every file in the directory and its bytes.
std::map<std::string, std::string> DirContents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    out[entry.path().filename().string()] = entry.is_regular_file() ? ReadBytes(entry.path().string()) : "<dir>";
  }
  return out;
}

const Key kWeb{v1::SERVICE, "default", "web"};

TEST_F(FileStateStoreTest, EmptyDirectoryLoadsEmptyStateAndStartsAHistory) {
  State loaded;
  loaded.revision = 42;  // overwritten
  auto store = Open(&loaded);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(loaded.revision, 0u);
  EXPECT_TRUE(loaded.objects.empty());
  // Both files from the start: from now on either one missing is damage.
  EXPECT_EQ(FileSize(journal()), kJournalHeaderBytes);
  EXPECT_EQ(FileSize(snapshot()), kSnapshotHeaderBytes);
  auto r = ReadStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << r->problem->what;
  EXPECT_EQ(r->snapshot.history, r->journal.history);
  EXPECT_EQ(r->snapshot.history.size(), 2 * kHistoryBytes);
}

TEST_F(FileStateStoreTest, OpenFailsForMissingDirectory) {
  State loaded;
  auto store = FileStateStore::Open(dir_ + "/missing", &loaded);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FileStateStoreTest, UpsertsAndDeletesSurviveReopen) {
  State state;
  {
    auto store = Open(&state);
    ASSERT_NE(store, nullptr);
    Commit(store.get(), &state, {Service("default", "web", 80, 1), Slice("web-1", "10.0.0.1")});
    Commit(store.get(), &state, {Service("prod", "db", 5432, 2)});
    Commit(store.get(), &state, {Service("default", "web", 81, 3)}, {Key{v1::ENDPOINT_SLICE, "default", "web-1"}});
    Commit(store.get(), &state, {Slice("web-2", "10.0.0.2")});
    // A delete of something that never existed is a no-op on replay.
    Commit(store.get(), &state, {}, {Key{v1::WORKLOAD, "default", "ghost"}});
  }
  EXPECT_EQ(FileSize(snapshot()), kSnapshotHeaderBytes) << "small changes must not rewrite the snapshot";
  EXPECT_EQ(state.revision, 5u);
  EXPECT_EQ(state.objects.size(), 3u);
  ExpectSameState(Reopen(), state);
}

// Prepare runs while the kernel commits: until Publish, a load sees the old
// state, and Abandon leaves no trace.
TEST_F(FileStateStoreTest, PreparedChangesAreInvisibleUntilPublished) {
  State state;
  auto store = Open(&state);
  ASSERT_NE(store, nullptr);
  Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  const State before = state;
  // A small change (a journal group) and a large one (a snapshot).
  State small = state;
  ++small.revision;
  small.objects[KeyOf(Slice("s1", "198.18.0.1"))] = Slice("s1", "198.18.0.1");
  State large = state;
  ++large.revision;
  std::vector<Key> keys;
  for (int i = 0; i < 1500; ++i) {
    v1::Resource r = Slice(absl::StrCat("bulk", i), "198.18.0.2");
    keys.push_back(KeyOf(r));
    large.objects[KeyOf(r)] = r;
  }
  FileStateStore::Pending group = store->Prepare(small, {KeyOf(Slice("s1", "198.18.0.1"))});
  ASSERT_TRUE(group.status.ok()) << group.status;
  EXPECT_FALSE(group.snapshot);
  FileStateStore::Pending snap = store->Prepare(large, keys);
  ASSERT_TRUE(snap.status.ok()) << snap.status;
  EXPECT_TRUE(snap.snapshot);
  EXPECT_TRUE(fs::exists(snapshot() + ".tmp"));
  ExpectSameState(Reopen(), before);
  store->Abandon(snap);
  store->Abandon(group);
  EXPECT_FALSE(fs::exists(snapshot() + ".tmp"));
  ExpectSameState(Reopen(), before);
  // Published, each becomes the saved state.
  ASSERT_TRUE(store->Publish(store->Prepare(small, {KeyOf(Slice("s1", "198.18.0.1"))})).ok());
  ExpectSameState(Reopen(), small);
  ASSERT_TRUE(store->Publish(store->Prepare(large, keys)).ok());
  EXPECT_FALSE(fs::exists(snapshot() + ".tmp"));
  EXPECT_EQ(FileSize(journal()), kJournalHeaderBytes);
  ExpectSameState(Reopen(), large);
}

// The layout documented in file_store.h, read back byte by byte.
TEST_F(FileStateStoreTest, FilesFollowTheDocumentedLayout) {
  State state;
  auto store = Open(&state);
  Commit(store.get(), &state, {Service("default", "web", 80, 1), Slice("s1", "198.18.0.1")});
  ASSERT_TRUE(store->Snapshot(state).ok());
  Commit(store.get(), &state, {Service("default", "db", 5432, 2)});
  Commit(store.get(), &state, {}, {kWeb});

  const std::string snap = ReadBytes(snapshot());
  ASSERT_GE(snap.size(), kSnapshotHeaderBytes);
  EXPECT_EQ(snap.substr(0, 8), "NFTPXSNP");
  EXPECT_EQ(Le32(snap, 8), 2u);
  EXPECT_EQ(Le32(snap, 12), kSnapshotHeaderBytes);
  const std::string history = snap.substr(16, 16);
  EXPECT_EQ(Le64(snap, 32), 1u);
  EXPECT_EQ(Le64(snap, 40), snap.size() - kSnapshotHeaderBytes);
  EXPECT_EQ(Le32(snap, 48), Crc32c(absl::string_view(snap).substr(kSnapshotHeaderBytes)));
  EXPECT_EQ(Le32(snap, 52), 2u);
  EXPECT_EQ(Le32(snap, 60), Crc32c(absl::string_view(snap).substr(0, 60)));
  // The payload is exactly a ListResponse of the resources in key order.
  v1::ListResponse list;
  ASSERT_TRUE(list.ParseFromString(snap.substr(kSnapshotHeaderBytes)));
  v1::ListResponse want;
  *want.add_resources() = Service("default", "web", 80, 1);
  *want.add_resources() = Slice("s1", "198.18.0.1");
  want.set_revision(1);
  EXPECT_EQ(Bytes(list), Bytes(want));

  const std::string j = ReadBytes(journal());
  EXPECT_EQ(j.substr(0, 8), "NFTPXJNL");
  EXPECT_EQ(Le32(j, 8), 2u);
  EXPECT_EQ(Le32(j, 12), kJournalHeaderBytes);
  EXPECT_EQ(j.substr(16, 16), history);
  EXPECT_EQ(Le64(j, 32), 1u) << "the journal follows the snapshot of revision 1";
  EXPECT_EQ(Le32(j, 44), Crc32c(absl::string_view(j).substr(0, 44)));
  const std::vector<GroupAt> groups = GroupsOf(j);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups.back().end, j.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    const size_t off = groups[i].offset;
    EXPECT_EQ(j.substr(off, 4), "NPXG");
    EXPECT_EQ(groups[i].revision, 2 + i);
    EXPECT_EQ(groups[i].previous, 1 + i);
    EXPECT_EQ(Le64(j, off + 24), 1u);
    EXPECT_EQ(j.substr(off + 32, 16), history);
    EXPECT_EQ(Le32(j, off + 48), Crc32c(absl::string_view(j).substr(off + kGroupHeaderBytes,
                                                                    groups[i].end - off - kGroupHeaderBytes)));
    EXPECT_EQ(Le32(j, off + 52), Crc32c(absl::string_view(j).substr(off, 52)));
  }
  // The second group: one DELETE event of revision 3, naming the key only.
  const size_t p = groups[1].offset + kGroupHeaderBytes;
  v1::WatchEvent e;
  ASSERT_TRUE(e.ParseFromString(j.substr(p + 4, Le32(j, p))));
  EXPECT_EQ(e.type(), v1::WatchEvent::DELETE);
  EXPECT_EQ(e.revision(), 3u);
  EXPECT_EQ(KeyOf(e.resource()), kWeb);
  EXPECT_EQ(p + 4 + Le32(j, p), groups[1].end);
}

TEST_F(FileStateStoreTest, EveryJournalAppendIsSynced) {
  State state;
  auto store = Open(&state);
  EXPECT_EQ(store->journal_syncs(), 0u);
  for (int i = 1; i <= 5; ++i) {
    Commit(store.get(), &state, {Service("default", absl::StrCat("s", i), 80, i)});
    EXPECT_EQ(store->journal_syncs(), static_cast<uint64_t>(i));
  }
  // A snapshot is synced its own way (fsync of the file, rename, fsync of the directory).
  ASSERT_TRUE(store->Snapshot(state).ok());
  EXPECT_EQ(store->journal_syncs(), 5u);
}

TEST_F(FileStateStoreTest, RecordWithoutKeysKeepsTheRevision) {
  State state;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
    Commit(store.get(), &state, {});
  }
  ExpectSameState(Reopen(), state);
  EXPECT_EQ(state.revision, 2u);
}

TEST_F(FileStateStoreTest, OlderRevisionIsRefused) {
  State state;
  auto store = Open(&state);
  Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  Commit(store.get(), &state, {Service("default", "web", 81, 2)});
  State old = state;
  old.revision = 1;
  EXPECT_EQ(store->Record(old, {kWeb}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Snapshot(old).code(), absl::StatusCode::kFailedPrecondition);
  ExpectSameState(Reopen(), state);
}

// A journal group must be newer than the saved revision (that is how load tells a gap); a change recorded at
// the same revision is written as a snapshot.
TEST_F(FileStateStoreTest, SameRevisionAgainIsASnapshot) {
  State state;
  auto store = Open(&state);
  Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  state.objects[KeyOf(Service("default", "db", 80, 1))] = Service("default", "db", 80, 1);
  FileStateStore::Pending p = store->Prepare(state, {KeyOf(Service("default", "db", 80, 1))});
  EXPECT_TRUE(p.snapshot);
  ASSERT_TRUE(store->Publish(std::move(p)).ok());
  store.reset();
  ExpectSameState(Reopen(), state);
}

TEST_F(FileStateStoreTest, CompactsOncePastTheThreshold) {
  constexpr size_t kThreshold = 4096;
  State state;
  auto store = Open(&state, FileStateStore::Options{kThreshold});
  ASSERT_NE(store, nullptr);
  int compactions = 0;
  uint64_t previous = 0;
  for (int i = 0; i < 200; ++i) {
    // Grow the state, and churn one object, so that the snapshot outgrows the floor too.
    Commit(store.get(), &state, {Service("default", absl::StrCat("svc-", i), 1000 + i, i + 1),
                                 Service("default", "web", 80 + i, i + 1)});
    if (i % 7 == 3) Commit(store.get(), &state, {}, {Key{v1::SERVICE, "default", absl::StrCat("svc-", i - 1)}});
    const uint64_t size = FileSize(journal());
    if (size < previous) ++compactions;
    previous = size;
    // Never larger than the threshold plus one group.
    ASSERT_LE(size, std::max<uint64_t>(kThreshold, FileSize(snapshot())) + 1024) << "commit " << i;
  }
  EXPECT_GE(compactions, 2);
  EXPECT_GT(FileSize(snapshot()), kThreshold) << "the threshold should have followed the snapshot's size";
  auto r = ReadStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok());
  EXPECT_GT(r->snapshot.revision, 0u);
  EXPECT_LE(r->snapshot.revision, state.revision);
  EXPECT_EQ(r->journal.revision, r->snapshot.revision);
  store.reset();
  ExpectSameState(Reopen(), state);
}

TEST_F(FileStateStoreTest, SnapshotStartsANewJournal) {
  State state;
  auto store = Open(&state);
  Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  EXPECT_GT(FileSize(journal()), kJournalHeaderBytes);
  ASSERT_TRUE(store->Snapshot(state).ok());
  EXPECT_EQ(FileSize(journal()), kJournalHeaderBytes);
  Commit(store.get(), &state, {Service("default", "web", 81, 2)});
  store.reset();
  ExpectSameState(Reopen(), state);
  auto r = ReadStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->snapshot.revision, 1u);
  EXPECT_EQ(r->journal.groups, 1u);
}

// ---- torn tails: an append the process did not finish -------------------------------------------------------

TEST_F(FileStateStoreTest, TornLastGroupIsDroppedAndCutOff) {
  State state;
  State before_last;
  uint64_t good_size = 0;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
    Commit(store.get(), &state, {Slice("web-1", "10.0.0.1")});
    before_last = state;
    good_size = FileSize(journal());
    Commit(store.get(), &state, {Service("default", "web", 81, 3), Slice("web-2", "10.0.0.2")});
  }
  const std::string data = ReadBytes(journal());
  const uint64_t last = data.size() - good_size;
  // Cut inside the payload (1 byte short, half), right after the header, inside the header.
  for (uint64_t keep : {last - 1, last / 2, uint64_t{kGroupHeaderBytes}, uint64_t{20}, uint64_t{1}}) {
    SCOPED_TRACE(absl::StrCat("keep ", keep, " bytes of the last group"));
    WriteBytes(journal(), data.substr(0, good_size + keep));
    auto r = ReadStateDir(dir_);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->ok()) << r->problem->what;
    EXPECT_EQ(r->journal.torn_bytes, keep);
    EXPECT_EQ(r->journal.good_bytes, good_size);
    State loaded;
    {
      auto store = Open(&loaded);
      ASSERT_NE(store, nullptr);
      // The whole last change is gone, not just its last record.
      ExpectSameState(loaded, before_last);
      EXPECT_EQ(FileSize(journal()), good_size) << "the torn tail must be cut off";
    }
  }
  // Appending after a torn tail gives a readable journal.
  WriteBytes(journal(), data.substr(0, data.size() - 2));
  State loaded;
  {
    auto store = Open(&loaded);
    Commit(store.get(), &loaded, {Service("default", "late", 8080, 4)});
  }
  State want = before_last;
  want.revision = 3;
  want.objects[KeyOf(Service("default", "late", 8080, 4))] = Service("default", "late", 8080, 4);
  ExpectSameState(Reopen(), want);
}

TEST_F(FileStateStoreTest, ZeroFilledTailIsATornTail) {
  State state;
  State before_last;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
    before_last = state;
    Commit(store.get(), &state, {Service("default", "db", 5432, 2)});
  }
  const std::string data = ReadBytes(journal());
  // Zeros after the last group: a file system that extended the file before the data reached the disk.
  WriteBytes(journal(), data + std::string(4096, '\0'));
  ExpectSameState(Reopen(), state);
  // Zeros from inside the last group to the end (its header intact, its payload not): the same.
  const GroupAt g = GroupsOf(data).back();
  std::string zeroed = data;
  for (size_t i = g.offset + kGroupHeaderBytes + 3; i < zeroed.size(); ++i) zeroed[i] = '\0';
  WriteBytes(journal(), zeroed + std::string(1000, '\0'));
  ExpectSameState(Reopen(), before_last);
  // The whole last group zero, its header too.
  zeroed = data.substr(0, g.offset) + std::string(data.size() - g.offset, '\0');
  WriteBytes(journal(), zeroed);
  ExpectSameState(Reopen(), before_last);
}

// ---- damage: refused, naming the file and the offset, and nothing touched ----------------------------------------

class DamageTest : public FileStateStoreTest {
 protected:
  // The shape: a snapshot of revision 1 holding 5 services, then 5 journaled changes (revisions 2-6).
  void SetUp() override {
    FileStateStoreTest::SetUp();
    auto store = Open(&state_);
    ++state_.revision;
    for (int i = 0; i < 5; ++i) {
      const v1::Resource r = Service("default", absl::StrCat("base-", i), 80, 1);
      state_.objects[KeyOf(r)] = r;
    }
    ASSERT_TRUE(store->Snapshot(state_).ok());
    after_snapshot_ = state_;
    for (int i = 0; i < 5; ++i) {
      Commit(store.get(), &state_, {Service("default", absl::StrCat("new-", i), 81, i + 2)});
      states_.push_back(state_);
    }
    journal_ = ReadBytes(journal());
    snapshot_ = ReadBytes(snapshot());
    groups_ = GroupsOf(journal_);
    ASSERT_EQ(groups_.size(), 5u);
  }

  // Open refuses with DataLoss naming `file` and `offset`, and every file is as it was. Returns the message.
  std::string ExpectRefused(const std::string& file, uint64_t offset) {
    const auto before = DirContents(dir_);
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    EXPECT_FALSE(store.ok());
    if (store.ok()) return "";
    const absl::Status s = store.status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_NE(s.message().find(file + ": "), std::string::npos) << s;
    EXPECT_NE(s.message().find(absl::StrCat("(at byte ", offset, ")")), std::string::npos) << s;
    EXPECT_NE(s.message().find("nftproxy state check " + dir_), std::string::npos) << s;
    EXPECT_NE(s.message().find("nftproxy state recover " + dir_), std::string::npos) << s;
    EXPECT_NE(s.message().find("serve --recover"), std::string::npos) << s;
    EXPECT_EQ(DirContents(dir_), before) << "a refused start must not change any file";
    return std::string(s.message());
  }

  State state_;
  State after_snapshot_;
  std::vector<State> states_;  // after revisions 2..6
  std::string journal_, snapshot_;
  std::vector<GroupAt> groups_;
};

TEST_F(DamageTest, IntactFilesLoad) { ExpectSameState(Reopen(), state_); }

TEST_F(DamageTest, EmptiedSnapshot) {
  WriteBytes(snapshot(), "");
  const std::string s = ExpectRefused(snapshot(), 0);
  EXPECT_NE(s.find("empty"), std::string::npos) << s;
}

TEST_F(DamageTest, DeletedSnapshot) {
  fs::remove(snapshot());
  const std::string s = ExpectRefused(snapshot(), 0);
  EXPECT_NE(s.find("missing"), std::string::npos) << s;
  // Nothing consistent is left: the journal's changes need the snapshot.
  EXPECT_NE(s.find("starts from revision 0 (0 resources), losing 6 changes (revisions 1 to 6)"),
            std::string::npos)
      << s;
}

// The issue: a length overwritten with 0xFFFFFF00 was read as a torn tail (revision 6 -> 2, 4 groups dropped).
TEST_F(DamageTest, OverwrittenGroupLength) {
  PutLe32(&journal_, groups_[1].offset + 4, 0xFFFFFF00u);
  WriteBytes(journal(), journal_);
  const std::string s = ExpectRefused(journal(), groups_[1].offset);
  EXPECT_NE(s.find("checksum"), std::string::npos) << s;
  EXPECT_NE(s.find("starts from revision 2 (6 resources), losing 4 changes (revisions 3 to 6)"),
            std::string::npos)
      << s;
}

TEST_F(DamageTest, ChecksumFailureInAMiddleGroup) {
  journal_[groups_[2].offset + kGroupHeaderBytes + 10] ^= 0x01;
  WriteBytes(journal(), journal_);
  const std::string s = ExpectRefused(journal(), groups_[2].offset);
  EXPECT_NE(s.find("checksum of the group of revision 4"), std::string::npos) << s;
}

// A complete last group whose checksum fails is damage, not a torn tail: the write finished.
TEST_F(DamageTest, ChecksumFailureInTheCompleteLastGroup) {
  journal_[groups_[4].offset + kGroupHeaderBytes + 10] ^= 0x40;
  WriteBytes(journal(), journal_);
  ExpectRefused(journal(), groups_[4].offset);
}

TEST_F(DamageTest, ChecksumFailureInTheSnapshot) {
  snapshot_[kSnapshotHeaderBytes + 7] ^= 0x01;
  WriteBytes(snapshot(), snapshot_);
  ExpectRefused(snapshot(), kSnapshotHeaderBytes);
}

TEST_F(DamageTest, DamagedSnapshotHeader) {
  snapshot_[33] ^= 0x01;  // the revision
  WriteBytes(snapshot(), snapshot_);
  ExpectRefused(snapshot(), 0);
}

TEST_F(DamageTest, SnapshotThatIsNoStateFile) {
  WriteBytes(snapshot(), "\xff\xff\xff\xff not a ListResponse");
  const std::string s = ExpectRefused(snapshot(), 0);
  EXPECT_NE(s.find("neither"), std::string::npos) << s;
}

TEST_F(DamageTest, ZeroedJournal) {
  WriteBytes(journal(), std::string(journal_.size(), '\0'));
  ExpectRefused(journal(), 0);
}

TEST_F(DamageTest, DeletedJournal) {
  fs::remove(journal());
  const std::string s = ExpectRefused(journal(), 0);
  EXPECT_NE(s.find("missing"), std::string::npos) << s;
}

TEST_F(DamageTest, EmptiedJournal) {
  WriteBytes(journal(), "");
  ExpectRefused(journal(), 0);
}

TEST_F(DamageTest, DamagedJournalHeader) {
  journal_[40] ^= 0x01;
  WriteBytes(journal(), journal_);
  ExpectRefused(journal(), 0);
}

// A group cut out of the middle: every remaining record checks out, but revision 4 follows revision 2.
TEST_F(DamageTest, GapInRevisions) {
  WriteBytes(journal(), journal_.substr(0, groups_[1].offset) + journal_.substr(groups_[1].end));
  const std::string s = ExpectRefused(journal(), groups_[1].offset);
  EXPECT_NE(s.find("gap"), std::string::npos) << s;
}

// The journal's first groups lost (its first group follows revision 3, the snapshot is at 1).
TEST_F(DamageTest, JournalStartingAfterTheSnapshot) {
  WriteBytes(journal(), journal_.substr(0, kJournalHeaderBytes) + journal_.substr(groups_[2].offset));
  ExpectRefused(journal(), kJournalHeaderBytes);
}

TEST_F(DamageTest, OlderSnapshotPutBack) {
  // A snapshot of revision 0 of the same history, as a backup from before the snapshot of revision 1 would be.
  WriteBytes(snapshot(), EncodeSnapshotFile(State(), snapshot_.substr(16, 16)));
  const std::string s = ExpectRefused(snapshot(), 32);
  EXPECT_NE(s.find("older than its journal"), std::string::npos) << s;
}

TEST_F(DamageTest, JournalOfAnotherStateDirectory) {
  std::string other = EncodeJournalHeader(NewStateHistory(), 1);
  WriteBytes(journal(), other);
  const std::string s = ExpectRefused(journal(), 16);
  EXPECT_NE(s.find("another state history"), std::string::npos) << s;
}

TEST_F(DamageTest, NewerFormatIsRefusedAndNotRecoverable) {
  snapshot_[8] = 3;
  PutLe32(&snapshot_, 60, Crc32c(absl::string_view(snapshot_).substr(0, 60)));
  WriteBytes(snapshot(), snapshot_);
  const auto before = DirContents(dir_);
  State loaded;
  auto store = FileStateStore::Open(dir_, &loaded);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find("format 3, written by a newer nftproxy"), std::string::npos)
      << store.status();
  EXPECT_EQ(DirContents(dir_), before);
}

// ---- crash windows of the store's own writes -------------------------------------------------------------------

// A crash after the compaction's snapshot was renamed into place, before the new journal was: the old journal
// (all of it at or below the snapshot's revision) is skipped, and never appended to.
TEST_F(FileStateStoreTest, CrashBetweenSnapshotAndNewJournal) {
  State state;
  std::string old_journal;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
    Commit(store.get(), &state, {Service("default", "db", 5432, 2)});
    old_journal = ReadBytes(journal());
    Commit(store.get(), &state, {Service("default", "cache", 6379, 3)});
    ASSERT_TRUE(store->Snapshot(state).ok());
  }
  WriteBytes(journal(), old_journal);  // the journal before the snapshot (revisions 1-2, base 0)
  State loaded;
  {
    auto store = Open(&loaded);
    ExpectSameState(loaded, state);
    EXPECT_EQ(ReadBytes(journal()), old_journal) << "the old journal is left as it is";
    Commit(store.get(), &loaded, {Service("default", "late", 1, 4)});
    EXPECT_EQ(FileSize(journal()), kJournalHeaderBytes) << "the next save is a snapshot with a new journal";
  }
  ExpectSameState(Reopen(), loaded);
}

// A start that stopped between the fresh journal and the first (empty) snapshot: still a fresh directory.
TEST_F(FileStateStoreTest, JournalWithoutChangesAndNoSnapshotIsAFreshStart) {
  {
    State fresh;
    auto store = Open(&fresh);
  }
  fs::remove(snapshot());
  State state;
  auto store = Open(&state);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(state.revision, 0u);
  EXPECT_TRUE(fs::exists(snapshot()));
}

// ---- format 1 --------------------------------------------------------------------------------------------------

TEST_F(FileStateStoreTest, Format1SnapshotWithoutJournalLoadsAndIsUpgraded) {
  State old;
  old.revision = 17;
  for (const v1::Resource& r : {Service("default", "web", 80, 16), Slice("web-1", "10.0.0.1")}) {
    old.objects[KeyOf(r)] = r;
  }
  WriteBytes(snapshot(), V1Snapshot(old));
  ASSERT_FALSE(fs::exists(journal()));
  const auto before = DirContents(dir_);
  State loaded;
  {
    auto store = Open(&loaded);
    ExpectSameState(loaded, old);
    EXPECT_EQ(DirContents(dir_), before) << "opening changes nothing";
    Commit(store.get(), &loaded, {}, {Key{v1::ENDPOINT_SLICE, "default", "web-1"}});
  }
  old.revision = 18;
  old.objects.erase(Key{v1::ENDPOINT_SLICE, "default", "web-1"});
  auto r = ReadStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->snapshot.format, 2);
  EXPECT_EQ(r->journal.format, 2);
  ExpectSameState(Reopen(), old);
}

TEST_F(FileStateStoreTest, Format1JournalLoadsWithItsTornTailAndIsUpgraded) {
  State snap;
  snap.revision = 2;
  snap.objects[kWeb] = Service("default", "web", 80, 2);
  WriteBytes(snapshot(), V1Snapshot(snap));
  // Revisions 1-2 are in the snapshot (a crash before the old journal was truncated), 3-4 after it, then a torn
  // group.
  const std::string v1_journal = V1Group(1, {Service("default", "gone", 80, 1)}) +
                                 V1Group(2, {Service("default", "web", 80, 2)}) +
                                 V1Group(3, {Service("default", "db", 5432, 3)}, {kWeb}) +
                                 V1Group(4, {Slice("s1", "10.0.0.1")}) +
                                 V1Group(5, {Slice("s2", "10.0.0.2")}).substr(0, 30);
  WriteBytes(journal(), v1_journal);
  State want = snap;
  want.revision = 4;
  want.objects.erase(kWeb);
  want.objects[KeyOf(Service("default", "db", 5432, 3))] = Service("default", "db", 5432, 3);
  want.objects[KeyOf(Slice("s1", "10.0.0.1"))] = Slice("s1", "10.0.0.1");
  const auto before = DirContents(dir_);
  State loaded;
  {
    auto store = Open(&loaded);
    ExpectSameState(loaded, want);
    EXPECT_EQ(DirContents(dir_), before);
    // What the server does after a restore: a snapshot, in format 2.
    ASSERT_TRUE(store->Snapshot(loaded).ok());
    Commit(store.get(), &loaded, {Slice("s3", "10.0.0.3")});
  }
  auto r = ReadStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->snapshot.format, 2);
  EXPECT_EQ(r->journal.format, 2);
  ExpectSameState(Reopen(), loaded);
}

TEST_F(FileStateStoreTest, Format1DamageIsRefused) {
  State snap;
  snap.revision = 2;
  snap.objects[kWeb] = Service("default", "web", 80, 2);
  const std::string g3 = V1Group(3, {Service("default", "db", 5432, 3)});
  const std::string g4 = V1Group(4, {Slice("s1", "10.0.0.1")});
  const std::string g5 = V1Group(5, {Slice("s2", "10.0.0.2")});
  // The snapshot missing while the journal starts at revision 3.
  WriteBytes(journal(), g3 + g4);
  {
    const auto before = DirContents(dir_);
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(store.status().message().find(snapshot() + ": missing"), std::string::npos) << store.status();
    EXPECT_EQ(DirContents(dir_), before);
  }
  // A gap: revision 5 after 3.
  WriteBytes(snapshot(), V1Snapshot(snap));
  WriteBytes(journal(), g3 + g5);
  {
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(store.status().message().find(absl::StrCat("(at byte ", g3.size(), ")")), std::string::npos)
        << store.status();
  }
  // The first group starting after the snapshot's revision + 1.
  WriteBytes(journal(), g4 + g5);
  {
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(store.status().message().find("gap"), std::string::npos) << store.status();
  }
  // Garbage inside a record.
  std::string bad = g3 + g4;
  for (size_t i = g3.size() + 4; i < g3.size() + 12; ++i) bad[i] = '\xff';
  WriteBytes(journal(), bad);
  {
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(store.status().message().find(absl::StrCat("(at byte ", g3.size(), ")")), std::string::npos)
        << store.status();
    EXPECT_EQ(ReadBytes(journal()), bad);
  }
}

// The cost of saving one change at 10,000 services (BENCHMARKS.md): Record of one changed EndpointSlice, timed,
// in $TMPDIR (run it once on a disk and once on tmpfs, where fdatasync costs nothing). Not run by default:
//   TMPDIR=/var/tmp server_tests --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_SaveCostAt10000*'
TEST_F(FileStateStoreTest, DISABLED_SaveCostAt10000Services) {
  State state;
  auto store = Open(&state);
  std::vector<Key> all;
  ++state.revision;
  for (int i = 0; i < 10000; ++i) {
    v1::Resource svc = Service("default", absl::StrCat("svc-", i), 80, 1);
    v1::Resource slice = Slice(absl::StrCat("svc-", i, "-1"), absl::StrCat("10.1.", i / 250, ".", i % 250 + 1));
    state.objects[KeyOf(svc)] = svc;
    state.objects[KeyOf(slice)] = slice;
  }
  ASSERT_TRUE(store->Snapshot(state).ok());
  constexpr int kChanges = 500;
  std::vector<double> us;
  const uint64_t syncs = store->journal_syncs();
  for (int i = 0; i < kChanges; ++i) {
    v1::Resource slice = Slice(absl::StrCat("svc-", (i * 7919) % 10000, "-1"), absl::StrCat("10.2.0.", i % 250 + 1));
    const absl::Time t0 = absl::Now();
    Commit(store.get(), &state, {slice});
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
  }
  std::sort(us.begin(), us.end());
  printf("dir %s: %d changes at 10,000 services, %llu journal fdatasyncs, %llu compactions; per change p50 %.0f us, "
         "p90 %.0f us, p99 %.0f us\n",
         dir_.c_str(), kChanges, static_cast<unsigned long long>(store->journal_syncs() - syncs),
         static_cast<unsigned long long>(kChanges - (store->journal_syncs() - syncs)), us[us.size() / 2],
         us[us.size() * 9 / 10], us[us.size() * 99 / 100]);
}

TEST_F(FileStateStoreTest, JournalFileMode) {
  State state;
  auto store = Open(&state);
  struct stat st;
  ASSERT_EQ(stat(journal().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0640, 0u);
  ASSERT_EQ(stat(snapshot().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0640, 0u);
}

}  // namespace
}  // namespace nftproxy::server
