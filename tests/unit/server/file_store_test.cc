// FileStateStore: snapshot + journal round trips, compaction, torn tails, damage, old state files.
#include "server/file_store.h"

#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

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

const Key kWeb{v1::SERVICE, "default", "web"};

TEST_F(FileStateStoreTest, EmptyDirectoryLoadsEmptyState) {
  State loaded;
  loaded.revision = 42;  // overwritten
  auto store = Open(&loaded);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(loaded.revision, 0u);
  EXPECT_TRUE(loaded.objects.empty());
}

TEST_F(FileStateStoreTest, OpenFailsForMissingDirectory) {
  State loaded;
  EXPECT_FALSE(FileStateStore::Open(dir_ + "/missing", &loaded).ok());
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
  EXPECT_FALSE(fs::exists(snapshot())) << "small changes must not rewrite the snapshot";
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
  EXPECT_EQ(FileSize(journal()), 0u);
  ExpectSameState(Reopen(), large);
}

// The snapshot is written field by field; it must still be exactly a
// ListResponse.
TEST_F(FileStateStoreTest, SnapshotIsAListResponse) {
  State state;
  state.revision = 300;
  state.objects[KeyOf(Service("default", "web", 80, 3))] = Service("default", "web", 80, 3);
  state.objects[KeyOf(Slice("s1", "198.18.0.1"))] = Slice("s1", "198.18.0.1");
  ASSERT_TRUE(SaveState(state, snapshot()).ok());
  v1::ListResponse list;
  ASSERT_TRUE(list.ParseFromString(ReadBytes(snapshot())));
  EXPECT_EQ(list.revision(), 300u);
  ASSERT_EQ(list.resources_size(), 2);
  v1::ListResponse want;
  want.set_revision(300);
  for (const auto& [key, r] : state.objects) *want.add_resources() = r;
  EXPECT_EQ(Bytes(list), Bytes(want));
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

TEST_F(FileStateStoreTest, CompactsOncePastTheThreshold) {
  constexpr size_t kThreshold = 4096;
  State state;
  auto store = Open(&state, FileStateStore::Options{kThreshold});
  ASSERT_NE(store, nullptr);
  uint64_t largest = 0;
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
    largest = std::max(largest, size);
    // Never larger than the threshold plus one group.
    ASSERT_LE(size, std::max<uint64_t>(kThreshold, FileSize(snapshot())) + 1024) << "commit " << i;
  }
  EXPECT_GE(compactions, 2);
  ASSERT_TRUE(fs::exists(snapshot()));
  EXPECT_GT(FileSize(snapshot()), kThreshold) << "the threshold should have followed the snapshot's size";
  auto snap = LoadState(snapshot());
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_GT(snap->revision, 0u);
  EXPECT_LE(snap->revision, state.revision);
  store.reset();
  ExpectSameState(Reopen(), state);
}

TEST_F(FileStateStoreTest, SnapshotEmptiesTheJournal) {
  State state;
  auto store = Open(&state);
  Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  EXPECT_GT(FileSize(journal()), 0u);
  ASSERT_TRUE(store->Snapshot(state).ok());
  EXPECT_EQ(FileSize(journal()), 0u);
  Commit(store.get(), &state, {Service("default", "web", 81, 2)});
  store.reset();
  ExpectSameState(Reopen(), state);
  auto snap = LoadState(snapshot());
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->revision, 1u);
}

TEST_F(FileStateStoreTest, TornLastGroupIsIgnored) {
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
  const uint64_t full = FileSize(journal());
  // The last group ends in an 8-byte BOOKMARK record: cut inside it, exactly before it (complete events, no
  // BOOKMARK), inside the group's first record, and inside its first length.
  const std::vector<uint64_t> cuts = {1, 3, 6, 8, full - good_size - 5, full - good_size - 2};
  for (uint64_t cut : cuts) {
    SCOPED_TRACE(absl::StrCat("cut ", cut, " bytes"));
    std::string data = ReadBytes(journal());
    std::string torn = data.substr(0, full - cut);
    WriteBytes(journal(), torn);
    State loaded;
    {
      auto store = Open(&loaded);
      ASSERT_NE(store, nullptr);
      // The whole last change is gone, not just its last record.
      ExpectSameState(loaded, before_last);
      EXPECT_EQ(FileSize(journal()), good_size) << "the torn tail must be cut off";
    }
    // Put the full journal back for the next cut.
    WriteBytes(journal(), data);
  }
  // Appending after a torn tail gives a readable journal.
  WriteBytes(journal(), ReadBytes(journal()).substr(0, full - 2));
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

TEST_F(FileStateStoreTest, ZeroFilledTailIsIgnored) {
  State state;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
  }
  WriteBytes(journal(), ReadBytes(journal()) + std::string(4096, '\0'));
  ExpectSameState(Reopen(), state);
}

TEST_F(FileStateStoreTest, GarbageInTheMiddleIsDataLoss) {
  State state;
  uint64_t second = 0;
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {Service("default", "web", 80, 1)});
    second = FileSize(journal());
    Commit(store.get(), &state, {Service("default", "db", 5432, 2)});
    Commit(store.get(), &state, {Service("default", "cache", 6379, 3)});
  }
  std::string data = ReadBytes(journal());
  // Overwrite the start of the second group's first event (its length stays valid).
  for (uint64_t i = second + 4; i < second + 12; ++i) data[i] = '\xff';
  WriteBytes(journal(), data);
  State loaded;
  auto store = FileStateStore::Open(dir_, &loaded);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find(journal()), std::string::npos) << store.status();
  EXPECT_NE(store.status().message().find(absl::StrCat("byte ", second)), std::string::npos) << store.status();
  EXPECT_EQ(ReadBytes(journal()), data) << "a damaged journal must be left alone";
}

TEST_F(FileStateStoreTest, DamagedSnapshotIsDataLoss) {
  WriteBytes(snapshot(), "\xff\xff\xff\xff not a ListResponse");
  State loaded;
  auto store = FileStateStore::Open(dir_, &loaded);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find(snapshot()), std::string::npos) << store.status();
}

TEST_F(FileStateStoreTest, OldStateFileWithoutJournalLoads) {
  State old;
  old.revision = 17;
  for (const v1::Resource& r : {Service("default", "web", 80, 16), Slice("web-1", "10.0.0.1")}) {
    old.objects[KeyOf(r)] = r;
  }
  ASSERT_TRUE(SaveState(old, snapshot()).ok());
  ASSERT_FALSE(fs::exists(journal()));
  State loaded;
  {
    auto store = Open(&loaded);
    ExpectSameState(loaded, old);
    Commit(store.get(), &loaded, {}, {Key{v1::ENDPOINT_SLICE, "default", "web-1"}});
  }
  old.revision = 18;
  old.objects.erase(Key{v1::ENDPOINT_SLICE, "default", "web-1"});
  ExpectSameState(Reopen(), old);
}

TEST_F(FileStateStoreTest, JournalGroupsAtOrBelowTheSnapshotRevisionAreSkipped) {
  // As after a crash between renaming a new snapshot and truncating the journal: the journal still holds
  // revisions 1-3, the snapshot is at revision 2 and does not hold what revision 1 created.
  State state;
  const v1::Resource gone = Service("default", "gone", 80, 1);
  {
    auto store = Open(&state);
    Commit(store.get(), &state, {gone});
    Commit(store.get(), &state, {Service("default", "web", 80, 2)});
    Commit(store.get(), &state, {Service("default", "db", 5432, 3)}, {Key{v1::SERVICE, "default", "web"}});
  }
  State snap;
  snap.revision = 2;
  for (const v1::Resource& r : {Service("default", "web", 80, 2), Service("default", "other", 81, 2)}) {
    snap.objects[KeyOf(r)] = r;
  }
  ASSERT_TRUE(SaveState(snap, snapshot()).ok());

  State want = snap;
  want.revision = 3;  // revision 3 is replayed
  want.objects.erase(Key{v1::SERVICE, "default", "web"});
  want.objects[KeyOf(Service("default", "db", 5432, 3))] = Service("default", "db", 5432, 3);
  const State loaded = Reopen();
  ExpectSameState(loaded, want);
  EXPECT_EQ(loaded.objects.count(KeyOf(gone)), 0u);
}

TEST_F(FileStateStoreTest, JournalFileMode) {
  State state;
  auto store = Open(&state);
  struct stat st;
  ASSERT_EQ(stat(journal().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0640, 0u);
}

}  // namespace
}  // namespace nftproxy::server
