// `state check` and `state recover` on damaged state directories: the report names the file and the offset,
// recovery moves the files aside byte for byte and keeps the newest consistent point.
#include "server/state_check.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "server/instance_lock.h"

namespace nftproxy::server {
namespace {

namespace fs = std::filesystem;

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

v1::Resource Service(const std::string& name, int port) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("service { metadata { namespace: 'default' name: '", name,
                   "' } spec { cluster_ips: '198.19.0.10' ports { protocol: TCP port: ", port, " } } }"),
      &r));
  return r;
}

std::map<std::string, std::string> DirContents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    out[entry.path().filename().string()] = entry.is_regular_file() ? ReadBytes(entry.path().string()) : "<dir>";
  }
  return out;
}

// A snapshot of revision 1 (5 services), then 5 journaled changes, revisions 2-6, one new service each.
class StateCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nftproxy-check-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    State state;
    auto store = FileStateStore::Open(dir_, &state);
    ASSERT_TRUE(store.ok()) << store.status();
    state.revision = 1;
    for (int i = 0; i < 5; ++i) state.objects[KeyOf(Service(absl::StrCat("base-", i), 80))] = Service(absl::StrCat("base-", i), 80);
    ASSERT_TRUE((*store)->Snapshot(state).ok());
    states_.push_back(state);
    for (int i = 0; i < 5; ++i) {
      ++state.revision;
      const v1::Resource r = Service(absl::StrCat("new-", i), 81);
      state.objects[KeyOf(r)] = r;
      ASSERT_TRUE((*store)->Record(state, {KeyOf(r)}).ok());
      states_.push_back(state);
    }
    journal_ = ReadBytes(journal());
    // Group offsets, from the documented layout.
    for (size_t off = kJournalHeaderBytes; off < journal_.size(); off += kGroupHeaderBytes + Le32(journal_, off + 4)) {
      groups_.push_back(off);
    }
    ASSERT_EQ(groups_.size(), 5u);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string journal() const { return dir_ + "/state.journal"; }
  std::string snapshot() const { return dir_ + "/state.pb"; }

  int Run(const std::vector<std::string>& args, std::string* out_text = nullptr) {
    std::ostringstream out, err;
    const int rc = RunStateCommand(args, out, err);
    if (out_text != nullptr) *out_text = out.str() + err.str();
    return rc;
  }

  std::string dir_;
  std::vector<State> states_;  // states_[i]: at revision i + 1
  std::string journal_;
  std::vector<size_t> groups_;
};

TEST_F(StateCheckTest, HealthyDirectory) {
  auto r = CheckStateDir(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->snapshot.format, 2);
  EXPECT_EQ(r->snapshot.revision, 1u);
  EXPECT_EQ(r->snapshot.resources, 5u);
  EXPECT_EQ(r->journal.format, 2);
  EXPECT_EQ(r->journal.revision, 1u);
  EXPECT_EQ(r->journal.groups, 5u);
  EXPECT_EQ(r->journal.first_revision, 2u);
  EXPECT_EQ(r->journal.last_revision, 6u);
  EXPECT_EQ(r->state.revision, 6u);
  EXPECT_EQ(r->state.objects.size(), 10u);
  const std::string text = DescribeStateReport(*r);
  EXPECT_NE(text.find(dir_ + ": ok"), std::string::npos) << text;
  EXPECT_NE(text.find("5 changes (revisions 2-6)"), std::string::npos) << text;
  EXPECT_NE(text.find("saved state: revision 6, 10 resources"), std::string::npos) << text;
  std::string out;
  EXPECT_EQ(Run({"check", dir_}, &out), 0) << out;
}

TEST_F(StateCheckTest, TornTailIsNotDamage) {
  WriteBytes(journal(), journal_.substr(0, journal_.size() - 5));
  auto r = CheckStateDir(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->state.revision, 5u);
  EXPECT_EQ(r->journal.torn_bytes, journal_.size() - 5 - groups_[4]);
  std::string out;
  EXPECT_EQ(Run({"check", dir_}, &out), 0) << out;
  EXPECT_NE(out.find(absl::StrCat("an unfinished write of ", r->journal.torn_bytes, " bytes at byte ", groups_[4])),
            std::string::npos)
      << out;
}

// Every damaged-file case: check names the file and the offset (exit 1), changes nothing; recover moves the
// files aside unchanged and leaves a directory that checks out at the newest consistent point.
TEST_F(StateCheckTest, EveryDamageIsReportedAndRecovered) {
  struct Case {
    std::string name;
    std::function<void()> damage;
    std::string file;
    uint64_t offset;
    uint64_t revision;  // the newest consistent point
    uint64_t lost;      // changes lost
  };
  const std::string snap = ReadBytes(snapshot());
  std::string flipped = journal_;
  flipped[groups_[2] + kGroupHeaderBytes + 3] ^= 0x10;
  std::string length = journal_;
  for (int i = 0; i < 4; ++i) length[groups_[1] + 4 + i] = "\x00\xff\xff\xff"[i];
  std::string gap = journal_.substr(0, groups_[3]) + journal_.substr(groups_[4]);
  std::string snap_flipped = snap;
  snap_flipped[kSnapshotHeaderBytes + 1] ^= 0x01;
  const std::vector<Case> cases = {
      {"snapshot emptied", [&] { WriteBytes(snapshot(), ""); }, snapshot(), 0, 0, 6},
      {"snapshot deleted", [&] { fs::remove(snapshot()); }, snapshot(), 0, 0, 6},
      {"snapshot checksum", [&] { WriteBytes(snapshot(), snap_flipped); }, snapshot(), kSnapshotHeaderBytes, 0, 6},
      {"length overwritten", [&] { WriteBytes(journal(), length); }, journal(), groups_[1], 2, 4},
      {"checksum before the tail", [&] { WriteBytes(journal(), flipped); }, journal(), groups_[2], 3, 3},
      {"gap", [&] { WriteBytes(journal(), gap); }, journal(), groups_[3], 4, 2},
      {"journal zeroed", [&] { WriteBytes(journal(), std::string(journal_.size(), '\0')); }, journal(), 0, 1, 0},
      {"journal deleted", [&] { fs::remove(journal()); }, journal(), 0, 1, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    // Fresh copies of the intact files.
    fs::remove_all(dir_);
    fs::create_directory(dir_);
    WriteBytes(snapshot(), snap);
    WriteBytes(journal(), journal_);
    c.damage();
    const auto damaged = DirContents(dir_);

    auto r = CheckStateDir(dir_);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->ok());
    EXPECT_EQ(r->problem->path, c.file) << r->problem->what;
    EXPECT_EQ(r->problem->offset, c.offset) << r->problem->what;
    EXPECT_EQ(r->state.revision, c.revision);
    EXPECT_EQ(r->lost_changes(), c.lost);
    std::string out;
    EXPECT_EQ(Run({"check", dir_}, &out), 1) << out;
    EXPECT_NE(out.find(absl::StrCat("problem: ", c.file, " at byte ", c.offset, ": ")), std::string::npos) << out;
    EXPECT_NE(out.find("nftproxy state recover " + dir_), std::string::npos) << out;
    EXPECT_EQ(DirContents(dir_), damaged) << "check changes nothing";

    // Recovery.
    ASSERT_EQ(Run({"recover", dir_}, &out), 0) << out;
    EXPECT_NE(out.find(absl::StrCat("now holds revision ", c.revision)), std::string::npos) << out;
    std::string aside;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (entry.path().filename().string().rfind("damaged-", 0) == 0) aside = entry.path().string();
    }
    ASSERT_FALSE(aside.empty()) << out;
    for (const auto& [name, bytes] : DirContents(aside)) {
      EXPECT_EQ(bytes, damaged.at(name)) << name << " must be moved aside unchanged";
    }
    for (const auto& [name, bytes] : damaged) {
      if (name == "state.pb" || name == "state.journal") {
        EXPECT_TRUE(fs::exists(aside + "/" + name)) << name;
      }
    }
    auto after = CheckStateDir(dir_);
    ASSERT_TRUE(after.ok());
    EXPECT_TRUE(after->ok()) << after->problem->what;
    State loaded;
    auto store = FileStateStore::Open(dir_, &loaded);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(loaded.revision, c.revision);
    const State& want = c.revision == 0 ? State() : states_[c.revision - 1];
    EXPECT_EQ(loaded.objects.size(), want.objects.size());
    for (const auto& [key, r] : want.objects) EXPECT_EQ(loaded.objects.count(key), 1u) << Describe(key);
  }
}

// Random damage (bit flips, overwritten runs, zeroed runs, truncations, in either file): the state a start
// would load, and the state recovery keeps, are always a state the directory really had (never a mix), and
// anything but an unfinished last group or a cut at a group boundary is refused.
TEST_F(StateCheckTest, RandomDamageNeverYieldsAStateThatNeverWas) {
  const std::string snap = ReadBytes(snapshot());
  // NFTPROXY_DAMAGE_SEED / NFTPROXY_DAMAGE_ITERATIONS run other or longer sequences.
  const char* seed = getenv("NFTPROXY_DAMAGE_SEED");
  const char* iterations = getenv("NFTPROXY_DAMAGE_ITERATIONS");
  const int n = iterations != nullptr ? atoi(iterations) : 300;
  std::mt19937 rng(seed != nullptr ? static_cast<uint32_t>(atoi(seed)) : 14);
  auto genuine = [&](const State& got) {
    if (got.revision == 0) return got.objects.empty();
    if (got.revision > states_.size()) return false;
    const State& want = states_[got.revision - 1];
    if (got.objects.size() != want.objects.size()) return false;
    for (const auto& [key, r] : want.objects) {
      auto it = got.objects.find(key);
      if (it == got.objects.end() || DeterministicBytes(it->second) != DeterministicBytes(r)) return false;
    }
    return true;
  };
  int refused = 0, loaded = 0;
  for (int iter = 0; iter < n; ++iter) {
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    const bool in_journal = rng() % 3 != 0;
    std::string data = in_journal ? journal_ : snap;
    const size_t at = rng() % data.size();
    std::string what;
    switch (rng() % 4) {
      case 0:
        data[at] = static_cast<char>(data[at] ^ (1 << (rng() % 8)));
        what = "bit flip";
        break;
      case 1:
        for (size_t i = at; i < std::min(data.size(), at + 1 + rng() % 64); ++i) data[i] = static_cast<char>(rng());
        what = "overwritten";
        break;
      case 2:
        for (size_t i = at; i < std::min(data.size(), at + 1 + rng() % 300); ++i) data[i] = '\0';
        what = "zeroed";
        break;
      default:
        data.resize(at);
        what = "cut";
    }
    SCOPED_TRACE(absl::StrCat(what, " at byte ", at, " of ", in_journal ? "the journal" : "the snapshot"));
    if (data == (in_journal ? journal_ : snap)) continue;  // zeros over zeros
    WriteBytes(snapshot(), in_journal ? snap : data);
    WriteBytes(journal(), in_journal ? data : journal_);
    auto r = CheckStateDir(dir_);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(genuine(r->state)) << "revision " << r->state.revision;
    if (r->ok()) {
      ++loaded;
      // Only the journal's end can go unnoticed: an unfinished last group, or a cut between groups.
      EXPECT_TRUE(in_journal && (what == "cut" || what == "zeroed" || r->journal.torn_bytes > 0) &&
                  r->state.revision >= 5 - (what == "cut" ? 5 : 0))
          << r->state.revision;
    } else {
      ++refused;
      EXPECT_EQ(r->problem->path, in_journal && r->problem->path != snapshot() ? journal() : r->problem->path);
    }
    if (iter % 10 == 0 && !r->ok()) {
      absl::StatusOr<RecoveryReport> rec = RecoverStateDir(dir_);
      ASSERT_TRUE(rec.ok()) << rec.status();
      State after;
      auto store = FileStateStore::Open(dir_, &after);
      ASSERT_TRUE(store.ok()) << store.status();
      EXPECT_TRUE(genuine(after));
      EXPECT_EQ(after.revision, r->state.revision);
      store->reset();
      for (const auto& entry : fs::directory_iterator(dir_)) {
        if (entry.is_directory()) fs::remove_all(entry.path());
      }
    }
  }
  EXPECT_GT(refused, n * 2 / 3);
  EXPECT_GT(loaded, 0);
}

TEST_F(StateCheckTest, RecoveryReportSaysWhatIsLost) {
  std::string flipped = journal_;
  flipped[groups_[2] + kGroupHeaderBytes + 3] ^= 0x10;
  WriteBytes(journal(), flipped);
  absl::StatusOr<RecoveryReport> r = RecoverStateDir(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->recovered);
  EXPECT_EQ(r->revision, 3u);
  EXPECT_EQ(r->resources, 7u);
  EXPECT_EQ(r->newest_revision, 6u);
  EXPECT_EQ(r->lost_changes, 3u);
  EXPECT_EQ(r->lost_groups, 2u) << "revisions 5 and 6 were intact, after the damage";
  EXPECT_EQ(r->problem.path, journal());
  EXPECT_EQ(r->problem.offset, groups_[2]);
  const std::string s = r->Summary();
  EXPECT_NE(s.find("lost: 3 changes (revisions 4 to 6)"), std::string::npos) << s;
  EXPECT_NE(s.find(r->moved_to), std::string::npos) << s;
  EXPECT_EQ(ReadBytes(r->moved_to + "/state.journal"), flipped);
}

TEST_F(StateCheckTest, RecoverDoesNothingToAHealthyDirectory) {
  const auto before = DirContents(dir_);
  absl::StatusOr<RecoveryReport> r = RecoverStateDir(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->recovered);
  EXPECT_EQ(r->revision, 6u);
  EXPECT_EQ(DirContents(dir_), before);
  EXPECT_NE(r->Summary().find("nothing to recover"), std::string::npos);
}

TEST_F(StateCheckTest, RecoverRefusesANewerFormat) {
  // A valid header of format 3: nothing is wrong with the files, this version cannot read them.
  std::string snap = ReadBytes(snapshot());
  snap[8] = 3;
  const uint32_t crc = Crc32c(snap.substr(0, 60));
  for (int i = 0; i < 4; ++i) snap[60 + i] = static_cast<char>(crc >> (8 * i));
  WriteBytes(snapshot(), snap);
  const auto before = DirContents(dir_);
  absl::StatusOr<RecoveryReport> rec = RecoverStateDir(dir_);
  EXPECT_EQ(rec.status().code(), absl::StatusCode::kFailedPrecondition) << rec.status();
  EXPECT_EQ(DirContents(dir_), before);
}

// A crash inside recovery, after the new snapshot took its name and before the new journal did: refused (the
// journal is of another history), and recovered again to the same point.
TEST_F(StateCheckTest, RecoveryInterruptedBetweenItsRenamesIsRecoveredAgain) {
  std::string flipped = journal_;
  flipped[groups_[3] + kGroupHeaderBytes + 3] ^= 0x10;
  WriteBytes(journal(), flipped);
  absl::StatusOr<RecoveryReport> first = RecoverStateDir(dir_);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->revision, 4u);
  WriteBytes(journal(), flipped);  // as if the journal's rename had not happened
  auto r = CheckStateDir(dir_);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->problem->path, journal());
  EXPECT_EQ(r->state.revision, 4u);
  absl::StatusOr<RecoveryReport> second = RecoverStateDir(dir_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->revision, 4u);
  EXPECT_NE(second->moved_to, first->moved_to);
}

TEST_F(StateCheckTest, Usage) {
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(Run({"check"}), 2);
  EXPECT_EQ(Run({"verify", dir_}), 2);
  EXPECT_EQ(Run({"check", dir_ + "/missing"}), 2);
  EXPECT_EQ(Run({"recover", dir_ + "/missing"}), 2);
  std::string out;
  EXPECT_EQ(Run({"--help"}, &out), 0);
  EXPECT_NE(out.find("nftproxy state check DIR"), std::string::npos);
}

TEST_F(StateCheckTest, RecoverRefusesADirectoryInUse) {
  fs::remove(snapshot());
  InstanceLocks server;  // what `serve` holds
  ASSERT_TRUE(server.LockStateDir(dir_).ok());
  const auto before = DirContents(dir_);
  std::string out;
  EXPECT_EQ(Run({"recover", dir_}, &out), 1);
  EXPECT_NE(out.find("in use"), std::string::npos) << out;
  EXPECT_EQ(DirContents(dir_), before);
}

}  // namespace
}  // namespace nftproxy::server
