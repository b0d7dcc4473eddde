// server/etcd_client against a real etcd (Debian's etcd-server), started by
// the test on loopback with a private data dir: ranges with limits, guarded
// transactions, a watch's puts and deletes with their revisions, a watch
// from a compacted revision (OUT_OF_RANGE), and an etcd that is not there
// (UNAVAILABLE naming the endpoint); and server/etcd_log on it: inline and
// chunked changes, a lost race, a damaged entry. Without /usr/bin/etcd it skips, and
// fails under CI=true. Endpoint parsing is checked without etcd.
#include "server/etcd_client.h"
#include "server/etcd_log.h"
#include "server/etcd_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace nftproxy::server {
namespace {

namespace pb = ::etcdserverpb;
constexpr char kEtcd[] = "/usr/bin/etcd";

// A loopback port nothing listens on now.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// An etcd cluster of `n` members on loopback, each stopped (by its pid) and
// the data dirs removed at the end.
class EtcdCluster {
 public:
  bool Start(int n) {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("npx-etcd-", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::vector<std::string> peers;
    std::string initial;
    for (int i = 0; i < n; ++i) {
      urls_.push_back(absl::StrCat("http://127.0.0.1:", FreePort()));
      peers.push_back(absl::StrCat("http://127.0.0.1:", FreePort()));
      absl::StrAppend(&initial, i ? "," : "", "m", i, "=", peers.back());
    }
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> argv = {kEtcd,
                                       "--name", absl::StrCat("m", i),
                                       "--data-dir", (dir_ / absl::StrCat("m", i)).string(),
                                       "--listen-client-urls", urls_[i],
                                       "--advertise-client-urls", urls_[i],
                                       "--listen-peer-urls", peers[i],
                                       "--initial-advertise-peer-urls", peers[i],
                                       "--initial-cluster", initial,
                                       "--initial-cluster-token", dir_.filename().string(),
                                       "--logger", "zap"};
      const std::string log = (dir_ / absl::StrCat("m", i, ".log")).string();
      const pid_t pid = fork();
      if (pid == 0) {
        const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
          dup2(fd, 1);
          dup2(fd, 2);
        }
        std::vector<char*> args;
        for (std::string& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        execv(kEtcd, args.data());
        _exit(127);
      }
      if (pid < 0) return false;
      pids_.push_back(pid);
    }
    return true;
  }
  ~EtcdCluster() {
    for (size_t i = 0; i < pids_.size(); ++i) Kill(i);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Kill(size_t i) {
    if (pids_[i] > 0) {
      kill(pids_[i], SIGKILL);
      waitpid(pids_[i], nullptr, 0);
      pids_[i] = -1;
    }
  }
  const std::vector<std::string>& urls() const { return urls_; }
  const std::string& url() const { return urls_[0]; }
  // Whether every member is still running.
  bool Running() {
    for (pid_t p : pids_) {
      if (p > 0 && waitpid(p, nullptr, WNOHANG) != 0) return false;
    }
    return true;
  }

 private:
  std::filesystem::path dir_;
  std::vector<std::string> urls_;
  std::vector<pid_t> pids_;
};

bool HaveEtcd() {
  if (access(kEtcd, X_OK) == 0) return true;
  const char* ci = getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") ADD_FAILURE() << kEtcd << " missing (scripts/install-deps.sh)";
  return false;
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveEtcd()) GTEST_SKIP() << kEtcd << " missing";
    ASSERT_TRUE(etcd_.Start(1));
    EtcdOptions options;
    options.endpoints = {etcd_.url()};
    options.timeout = absl::Seconds(2);
    auto c = EtcdClient::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    ASSERT_TRUE(client_->WaitConnected(absl::Seconds(30)).ok()) << "etcd at " << etcd_.url() << " not reachable";
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    absl::Status last;
    while (absl::Now() < deadline) {
      last = client_->Range("x", "").status();
      if (last.ok()) return;
      ASSERT_TRUE(etcd_.Running()) << "etcd exited; see its log in the test's data dir";
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "etcd did not answer: " << last;
  }

  // Puts `key` = `value`; the revision it made.
  int64_t Put(const std::string& key, const std::string& value) {
    pb::TxnRequest txn;
    pb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    auto r = client_->Txn(txn);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->header().revision() : 0;
  }

  EtcdCluster etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST(EtcdEndpoints, ParsedOrRefusedWithTheReason) {
  auto a = ParseEtcdEndpoint("http://127.0.0.1:2379");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "127.0.0.1:2379");
  EXPECT_FALSE(a->tls);
  auto b = ParseEtcdEndpoint("https://[::1]:2379/");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->address, "[::1]:2379");
  EXPECT_TRUE(b->tls);
  for (const char* bad : {"127.0.0.1:2379", "http://127.0.0.1", "http://127.0.0.1:0", "http://h:99999",
                          "http://h:2379/v3", "unix:///x"}) {
    auto r = ParseEtcdEndpoint(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
  EXPECT_EQ(EtcdPrefixEnd("/npx/"), "/npx0");
  EXPECT_EQ(EtcdPrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(EtcdPrefixEnd(""), std::string(1, '\0'));
  EtcdOptions mixed;
  mixed.endpoints = {"http://127.0.0.1:1", "https://127.0.0.1:2"};
  EXPECT_EQ(EtcdClient::Connect(mixed).status().code(), absl::StatusCode::kInvalidArgument);
  EtcdOptions ca_without_tls;
  ca_without_tls.endpoints = {"http://127.0.0.1:1"};
  ca_without_tls.ca_file = "/etc/hostname";
  EXPECT_EQ(EtcdClient::Connect(ca_without_tls).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EtcdClientTest, RangesInPagesAndTransactionsGuardedByRevision) {
  const int64_t r1 = Put("/p/a", "1");
  Put("/p/b", "2");
  Put("/p/c", "3");
  Put("/q", "outside");
  auto page = client_->Range("/p/", EtcdPrefixEnd("/p/"), 0, 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->kvs.size(), 2u);
  EXPECT_EQ(page->kvs[0].key, "/p/a");
  EXPECT_EQ(page->kvs[0].mod_revision, r1);
  EXPECT_TRUE(page->more);
  auto rest = client_->Range("/p/b\x01", EtcdPrefixEnd("/p/"), page->revision, 2);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->kvs.size(), 1u);
  EXPECT_EQ(rest->kvs[0].value, "3");
  EXPECT_FALSE(rest->more);

  // A write guarded by /p/a's revision: the first wins, the second (same
  // guard, now stale) does not.
  auto guarded = [&](const std::string& value) {
    pb::TxnRequest txn;
    pb::Compare* cmp = txn.add_compare();
    cmp->set_key("/p/a");
    cmp->set_target(pb::Compare::MOD);
    cmp->set_result(pb::Compare::EQUAL);
    cmp->set_mod_revision(r1);
    pb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key("/p/a");
    put->set_value(value);
    auto r = client_->Txn(txn);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->succeeded();
  };
  EXPECT_TRUE(guarded("first"));
  EXPECT_FALSE(guarded("second"));
  auto a = client_->Range("/p/a", "");
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->kvs.size(), 1u);
  EXPECT_EQ(a->kvs[0].value, "first");
}

TEST_F(EtcdClientTest, WatchGetsPutsAndDeletesUnderThePrefixInOrder) {
  const int64_t start = Put("/w/before", "x");
  absl::Mutex mu;
  std::vector<std::string> seen;
  int64_t complete_to = 0;
  absl::Notification ended;
  absl::Status end_status;
  std::unique_ptr<EtcdWatch> w = client_->Watch(
      "/w/", start + 1,
      [&](const std::vector<EtcdClient::WatchEvent>& events, int64_t revision) {
        absl::MutexLock lock(&mu);
        for (const auto& e : events) {
          seen.push_back(absl::StrCat(e.put ? "put " : "delete ", e.kv.key, "=", e.kv.value, "@", e.kv.mod_revision));
        }
        complete_to = std::max(complete_to, revision);
      },
      [&](absl::Status s) {
        end_status = s;
        ended.Notify();
      });
  const int64_t r2 = Put("/w/a", "1");
  Put("/other", "not watched");
  pb::TxnRequest del;
  del.add_success()->mutable_request_delete_range()->set_key("/w/before");
  auto d = client_->Txn(del);
  ASSERT_TRUE(d.ok()) << d.status();
  const int64_t r4 = d->header().revision();
  {
    absl::MutexLock lock(&mu);
    auto caught_up = [&] { return complete_to >= r4; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&caught_up), absl::Seconds(20))) << "the watch did not reach " << r4;
    EXPECT_EQ(seen, (std::vector<std::string>{absl::StrCat("put /w/a=1@", r2), absl::StrCat("delete /w/before=@", r4)}));
  }
  w->Cancel();
  ASSERT_TRUE(ended.HasBeenNotified());
  EXPECT_EQ(end_status.code(), absl::StatusCode::kCancelled) << end_status;
}

TEST_F(EtcdClientTest, AWatchFromACompactedRevisionIsOutOfRange) {
  const int64_t r1 = Put("/c/a", "1");
  Put("/c/a", "2");
  const int64_t r3 = Put("/c/a", "3");
  ASSERT_TRUE(client_->Compact(r3).ok());
  absl::Notification ended;
  absl::Status end_status;
  int events = 0;
  std::unique_ptr<EtcdWatch> w = client_->Watch(
      "/c/", r1, [&](const std::vector<EtcdClient::WatchEvent>& e, int64_t) { events += e.size(); },
      [&](absl::Status s) {
        end_status = s;
        ended.Notify();
      });
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(end_status.code(), absl::StatusCode::kOutOfRange) << end_status;
  EXPECT_NE(end_status.message().find(absl::StrCat("after ", r3)), std::string::npos) << end_status;
  EXPECT_EQ(events, 0);
}

std::string Pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 + i / 1000);
  return s;
}

TEST_F(EtcdClientTest, LogAppendsChangesOfAnySizeInOrderGuardedByTheHead) {
  EtcdLog log(client_.get(), "/npx/");
  auto h0 = log.ReadHead();
  ASSERT_TRUE(h0.ok()) << h0.status();
  EXPECT_EQ(h0->seq, 0u);
  // A watcher from the start sees each entry once, in order.
  absl::Mutex mu;
  std::vector<std::pair<int64_t, std::string>> watched;
  std::unique_ptr<EtcdWatch> w = client_->Watch(
      log.LogPrefix(), h0->revision + 1,
      [&](const std::vector<EtcdClient::WatchEvent>& events, int64_t) {
        for (const auto& e : events) {
          auto change = log.Resolve(e.kv);
          absl::MutexLock lock(&mu);
          watched.emplace_back(e.kv.mod_revision, change.ok() ? *change : change.status().ToString());
        }
      },
      [](absl::Status) {});
  const std::string small = "a small change";
  // Over etcd's 1.5 MiB request limit: chunks first, then the entry.
  const std::string big = Pattern(3 * EtcdLog::kChunkSize + 5, 'b');
  auto r1 = log.Append(*h0, small);
  ASSERT_TRUE(r1.ok()) << r1.status();
  auto h1 = log.ReadHead();
  ASSERT_TRUE(h1.ok());
  EXPECT_EQ(h1->seq, 1u);
  EXPECT_EQ(h1->mod_revision, *r1);
  auto r2 = log.Append(*h1, big);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_GT(*r2, *r1);
  auto entries = client_->Range(log.LogPrefix(), EtcdPrefixEnd(log.LogPrefix()));
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->kvs.size(), 2u);
  EXPECT_EQ(entries->kvs[0].key, "/npx/log/00000000000000000001");
  EXPECT_EQ(entries->kvs[1].mod_revision, *r2);
  auto got = log.Resolve(entries->kvs[1]);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == big);
  {
    absl::MutexLock lock(&mu);
    auto both = [&] { return watched.size() >= 2; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&both), absl::Seconds(20)));
    ASSERT_EQ(watched.size(), 2u);
    EXPECT_EQ(watched[0], std::make_pair(*r1, small));
    EXPECT_EQ(watched[1].first, *r2);
    EXPECT_TRUE(watched[1].second == big) << watched[1].second.substr(0, 200);
  }
  w->Cancel();

  // Two writers that read the same head: one wins, the other is ABORTED and
  // leaves no chunks behind.
  auto h2 = log.ReadHead();
  ASSERT_TRUE(h2.ok());
  ASSERT_TRUE(log.Append(*h2, "winner").ok());
  auto lost = log.Append(*h2, Pattern(2 * EtcdLog::kChunkSize, 'l'));
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kAborted) << lost.status();
  auto blobs = client_->Range(log.BlobPrefix(), EtcdPrefixEnd(log.BlobPrefix()));
  ASSERT_TRUE(blobs.ok());
  EXPECT_EQ(blobs->kvs.size(), 4u);  // the big change's chunks only
  auto h3 = log.ReadHead();
  ASSERT_TRUE(h3.ok());
  EXPECT_EQ(h3->seq, 3u);

  // Catching up after etcd compacted its history: the entries are still
  // there to read, a page at a time, at one revision.
  ASSERT_TRUE(client_->Compact(h3->mod_revision).ok());
  int64_t at = 0;
  auto page = log.ReadAfter(1, 1, &at);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].key, log.EntryKey(2));
  EXPECT_EQ(at, h3->revision);
  auto last = log.ReadAfter(2, 10, &at);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].value, "Iwinner");
  auto none = log.ReadAfter(3, 10, &at);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// server/etcd_store's SharedLog over the log: positions are (seq, the
// entry's revision), which is the head's mod_revision the next append is
// guarded by; entries come back in order, big ones resolved.
TEST_F(EtcdClientTest, SharedLogPositionsGuardAppendsAndReadBackInOrder) {
  EtcdSharedLog shared(client_.get(), "/shared/");
  LogPosition pos;
  int64_t read_at = 0;
  auto entries = shared.ReadAfter(pos, 10, &read_at);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_TRUE(entries->empty());
  EXPECT_GT(read_at, 0);
  std::vector<int64_t> revisions;
  const std::string big(EtcdLog::kInlineLimit + 10, 'b');
  for (const std::string& change : {std::string("one"), big, std::string("three")}) {
    auto rev = shared.Append(pos, change);
    ASSERT_TRUE(rev.ok()) << rev.status();
    pos = LogPosition{pos.seq + 1, *rev};
    revisions.push_back(*rev);
  }
  // A writer still at entry 1 loses.
  EXPECT_EQ(shared.Append(LogPosition{1, revisions[0]}, "late").status().code(), absl::StatusCode::kAborted);
  entries = shared.ReadAfter(LogPosition{1, revisions[0]}, 10, &read_at);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].position.seq, 2u);
  EXPECT_EQ((*entries)[0].position.revision, revisions[1]);
  EXPECT_EQ((*entries)[0].change, big);
  EXPECT_EQ((*entries)[1].position.revision, revisions[2]);
  EXPECT_EQ((*entries)[1].change, "three");
  EXPECT_GE(read_at, revisions[2]);
  EXPECT_EQ(*EntrySeq("/shared/log/", shared.log().EntryKey(7)), 7u);
  EXPECT_EQ(EntrySeq("/shared/log/", "/shared/log/x").status().code(), absl::StatusCode::kDataLoss);
}

// Trimming: the entries (and their blobs, and older bases) up to an entry
// become the base; a reader behind it is told so (OUT_OF_RANGE) and reads
// the base; a base only moves forward.
TEST_F(EtcdClientTest, TrimFoldsEntriesIntoTheBaseAndDeletesThem) {
  EtcdSharedLog shared(client_.get(), "/trim/");
  LogPosition pos;
  std::vector<LogPosition> at;
  const std::string big = Pattern(2 * EtcdLog::kChunkSize + 7, 'g');
  for (const std::string& change : {std::string("one"), big, std::string("three"), std::string("four")}) {
    auto rev = shared.Append(pos, change);
    ASSERT_TRUE(rev.ok()) << rev.status();
    pos = LogPosition{pos.seq + 1, *rev};
    at.push_back(pos);
  }
  auto count = [&](const std::string& prefix) {
    auto r = client_->Range(prefix, EtcdPrefixEnd(prefix));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->kvs.size() : 0u;
  };
  EXPECT_EQ(count("/trim/log/"), 4u);
  EXPECT_EQ(count("/trim/blob/"), 3u);  // entry 2's chunks
  int64_t read_at = 0;
  auto none = shared.ReadBase(&read_at);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  // A state over the request limit, at entry 3.
  const std::string state = Pattern(3 * EtcdLog::kChunkSize + 1, 's');
  ASSERT_TRUE(shared.Trim(at[2], state).ok());
  EXPECT_EQ(shared.BaseSeq(), 3u);
  EXPECT_EQ(count("/trim/log/"), 1u);
  EXPECT_EQ(count("/trim/blob/"), 0u);
  read_at = 0;
  auto base = shared.ReadBase(&read_at);
  ASSERT_TRUE(base.ok()) << base.status();
  ASSERT_TRUE(base->has_value());
  EXPECT_EQ((*base)->position.seq, 3u);
  EXPECT_EQ((*base)->position.revision, at[2].revision);
  EXPECT_EQ((*base)->change, state);
  // Behind the base: OUT_OF_RANGE; from it: entry 4.
  read_at = 0;
  EXPECT_EQ(shared.ReadAfter(at[0], 10, &read_at).status().code(), absl::StatusCode::kOutOfRange);
  read_at = 0;
  auto rest = shared.ReadAfter(at[2], 10, &read_at);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].change, "four");
  // A base does not move back, and a trim at an entry gone is refused.
  EXPECT_EQ(shared.Trim(at[1], "older").code(), absl::StatusCode::kFailedPrecondition);
  // The next base replaces this one's chunks.
  ASSERT_TRUE(shared.Trim(at[3], "small state").ok());
  EXPECT_EQ(count("/trim/log/"), 0u);
  EXPECT_EQ(count("/trim/baseblob/"), 1u);
  read_at = 0;
  base = shared.ReadBase(&read_at);
  ASSERT_TRUE(base.ok() && base->has_value());
  EXPECT_EQ((*base)->change, "small state");
  // Appends go on after the base.
  auto rev = shared.Append(at[3], "five");
  ASSERT_TRUE(rev.ok()) << rev.status();
  read_at = 0;
  rest = shared.ReadAfter(at[3], 10, &read_at);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].position.seq, 5u);
}

TEST_F(EtcdClientTest, ADamagedEntryOrAForeignHeadIsDataLossNamingTheKey) {
  EtcdLog log(client_.get(), "/npx/");
  auto h0 = log.ReadHead();
  ASSERT_TRUE(h0.ok());
  ASSERT_TRUE(log.Append(*h0, Pattern(EtcdLog::kChunkSize + 1, 'd')).ok());
  auto blobs = client_->Range(log.BlobPrefix(), EtcdPrefixEnd(log.BlobPrefix()));
  ASSERT_TRUE(blobs.ok());
  ASSERT_EQ(blobs->kvs.size(), 2u);
  pb::TxnRequest del;
  del.add_success()->mutable_request_delete_range()->set_key(blobs->kvs[1].key);
  ASSERT_TRUE(client_->Txn(del).ok());
  auto entry = client_->Range(log.EntryKey(1), "");
  ASSERT_TRUE(entry.ok());
  ASSERT_EQ(entry->kvs.size(), 1u);
  auto got = log.Resolve(entry->kvs[0]);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_NE(got.status().message().find("/npx/log/00000000000000000001"), std::string::npos) << got.status();
  EXPECT_NE(got.status().message().find("1 of 2 chunks"), std::string::npos) << got.status();
  Put("/npx/head", "not a number");
  EXPECT_EQ(log.ReadHead().status().code(), absl::StatusCode::kDataLoss);
}

// Three members; one is killed (SIGKILL) in the middle of a run of appends
// through a client given all three endpoints. Appends that fail while the
// cluster settles are retried from a fresh head; every append acknowledged
// is in the log afterwards, once, in the order acknowledged.
TEST(EtcdClusterTest, AppendsAcknowledgedAcrossAMemberKilledAreAllKept) {
  if (!HaveEtcd()) GTEST_SKIP() << kEtcd << " missing";
  EtcdCluster cluster;
  ASSERT_TRUE(cluster.Start(3));
  EtcdOptions options;
  options.endpoints = cluster.urls();
  options.timeout = absl::Seconds(3);
  auto c = EtcdClient::Connect(options);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->WaitConnected(absl::Seconds(30)).ok());
  EtcdLog log(c->get(), "/npx/");
  std::vector<std::string> acknowledged;
  int failures = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  for (int i = 0; i < 40; ++i) {
    if (i == 15) cluster.Kill(0);
    const std::string change = absl::StrCat("change ", i);
    for (;;) {
      ASSERT_LT(absl::Now(), deadline) << "no append for too long after " << acknowledged.size();
      auto head = log.ReadHead();
      if (head.ok()) {
        // An append whose answer was lost may have been committed.
        auto entry = (*c)->Range(log.EntryKey(head->seq), "");
        if (entry.ok() && !entry->kvs.empty() && entry->kvs[0].value == "I" + change) break;
        auto r = log.Append(*head, change);
        if (r.ok()) {
          acknowledged.push_back(change);
          break;
        }
      }
      ++failures;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  int64_t at = 0;
  auto entries = log.ReadAfter(0, 0, &at);
  ASSERT_TRUE(entries.ok()) << entries.status();
  std::vector<std::string> logged;
  for (const EtcdKeyValue& kv : *entries) logged.push_back(kv.value.substr(1));
  std::vector<std::string> want;
  for (int i = 0; i < 40; ++i) want.push_back(absl::StrCat("change ", i));
  EXPECT_EQ(logged, want);  // each once, in order
  for (const std::string& a : acknowledged) EXPECT_NE(std::find(logged.begin(), logged.end(), a), logged.end()) << a;
  std::cout << "40 appends, " << acknowledged.size() << " acknowledged, " << failures
            << " failed attempts while a member was killed\n";
}

TEST(EtcdClientDown, UnreachableIsUnavailableNamingTheEndpoint) {
  EtcdOptions options;
  options.endpoints = {absl::StrCat("http://127.0.0.1:", FreePort())};
  options.timeout = absl::Seconds(2);
  auto c = EtcdClient::Connect(options);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::Status s = (*c)->Range("x", "").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(options.endpoints[0]), std::string::npos) << s;
  absl::Notification ended;
  absl::Status end_status;
  auto w = (*c)->Watch("/", 0, [](const std::vector<EtcdClient::WatchEvent>&, int64_t) {},
                       [&](absl::Status st) {
                         end_status = st;
                         ended.Notify();
                       });
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(end_status.code(), absl::StatusCode::kUnavailable) << end_status;
}

}  // namespace
}  // namespace nftproxy::server
