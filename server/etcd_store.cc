#include "server/etcd_store.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/write_engine.h"

namespace nftproxy::server {

absl::StatusOr<uint64_t> EntrySeq(const std::string& log_prefix, const std::string& key) {
  uint64_t seq = 0;
  if (key.size() != log_prefix.size() + 20 || key.compare(0, log_prefix.size(), log_prefix) != 0 ||
      !absl::SimpleAtoi(absl::string_view(key).substr(log_prefix.size()), &seq) || seq == 0) {
    return absl::DataLossError(absl::StrCat("etcd key ", key, ": not a log entry's key"));
  }
  return seq;
}

absl::StatusOr<int64_t> EtcdSharedLog::Append(const LogPosition& after, const std::string& change) {
  // The head's mod_revision is the revision of the transaction that wrote
  // entry after.seq (head and entry are put together).
  EtcdLog::Head head;
  head.seq = after.seq;
  head.mod_revision = after.revision;
  return log_.Append(head, change);
}

absl::StatusOr<std::vector<LogEntry>> EtcdSharedLog::ReadAfter(const LogPosition& after, size_t limit,
                                                              int64_t* read_revision) {
  // The base first, at the revision the entries are read at: entries up to
  // it are gone.
  int64_t revision = *read_revision;
  absl::StatusOr<std::optional<EtcdLog::Base>> base = log_.ReadBase(&revision);
  if (!base.ok()) return base.status();
  base_seq_ = base->has_value() ? (*base)->seq : 0;
  if (base->has_value() && (*base)->seq > after.seq) {
    return absl::OutOfRangeError(absl::StrCat("etcd's log under ", prefix_, ": entries up to ", (*base)->seq,
                                              " were folded into its base; this node is at entry ", after.seq));
  }
  absl::StatusOr<std::vector<EtcdKeyValue>> kvs = log_.ReadAfter(after.seq, static_cast<int64_t>(limit), &revision);
  if (!kvs.ok()) return kvs.status();
  *read_revision = revision;
  std::vector<LogEntry> out;
  out.reserve(kvs->size());
  uint64_t expect = after.seq + 1;
  size_t bytes = 0;
  for (const EtcdKeyValue& kv : *kvs) {
    // Bounded: large changes (blobs) stop the page early; the caller reads on.
    if (bytes >= kMaxReadBytes) break;
    absl::StatusOr<uint64_t> seq = EntrySeq(log_.LogPrefix(), kv.key);
    if (!seq.ok()) return seq.status();
    if (*seq != expect) {
      return absl::DataLossError(absl::StrCat("etcd's log under ", prefix_, " has no entry ", expect,
                                              " (the next is ", *seq, ")"));
    }
    ++expect;
    absl::StatusOr<std::string> change = log_.Resolve(kv);
    if (!change.ok()) return change.status();
    bytes += change->size();
    out.push_back(LogEntry{LogPosition{*seq, kv.mod_revision}, std::move(*change)});
  }
  return out;
}

absl::StatusOr<std::optional<LogEntry>> EtcdSharedLog::ReadBase(int64_t* read_revision) {
  absl::StatusOr<std::optional<EtcdLog::Base>> base = log_.ReadBase(read_revision);
  if (!base.ok()) return base.status();
  if (!base->has_value()) {
    base_seq_ = 0;
    return std::optional<LogEntry>();
  }
  absl::StatusOr<std::string> state = log_.ReadBaseState(**base, *read_revision);
  if (!state.ok()) return state.status();
  base_seq_ = (*base)->seq;
  return std::optional<LogEntry>(LogEntry{LogPosition{(*base)->seq, (*base)->revision}, std::move(*state)});
}

absl::Status EtcdSharedLog::Trim(const LogPosition& at, const std::string& state) {
  absl::Status s = log_.Trim(at.seq, at.revision, state);
  if (s.ok()) base_seq_ = std::max(base_seq_.load(), at.seq);
  return s;
}

std::string EtcdSharedLog::Describe() const {
  return absl::StrCat("etcd at ", client_->endpoints_text(), ", prefix ", prefix_);
}

void EtcdFollower::Start() {
  thread_ = std::thread([this] { Run(); });
}

void EtcdFollower::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool EtcdFollower::Wait(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || dirty_ || ended_; };
  mu_.AwaitWithTimeout(absl::Condition(&woken), d);
  return stop_;
}

void EtcdFollower::Run() {
  const absl::Duration kMinBackoff = absl::Milliseconds(100), kMaxBackoff = absl::Seconds(2);
  // Catch up at least this often even without events (a lost event costs
  // at most this much).
  const absl::Duration kPoll = absl::Seconds(5);
  absl::Duration backoff = kMinBackoff;
  std::string logged;  // the last error logged (each new one is logged once)
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      dirty_ = ended_ = false;
    }
    absl::StatusOr<int64_t> read_at = engine_->FollowSharedLog();  // (reports the outcome itself)
    if (!read_at.ok()) {
      if (read_at.status().message() != logged) {
        logged = std::string(read_at.status().message());
        log::Warning("cannot follow the shared state", {{"error", logged}});
      }
      if (Wait(backoff)) return;
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    backoff = kMinBackoff;
    logged.clear();
    Trim();
    // Every entry up to *read_at is applied: watch from the next revision.
    std::unique_ptr<EtcdWatch> watch = log_->client()->Watch(
        log_->log().LogPrefix(), *read_at + 1,
        [this](const std::vector<EtcdClient::WatchEvent>& events, int64_t) {
          if (events.empty()) return;
          absl::MutexLock lock(&mu_);
          dirty_ = true;
        },
        [this](absl::Status s) {
          absl::MutexLock lock(&mu_);
          ended_ = true;
          end_status_ = std::move(s);
        });
    for (;;) {
      if (Wait(kPoll)) {
        watch->Cancel();
        return;
      }
      bool ended = false;
      absl::Status why;
      {
        absl::MutexLock lock(&mu_);
        dirty_ = false;
        ended = ended_;
        ended_ = false;
        why = end_status_;
      }
      if (ended) {
        watch->Cancel();
        if (!why.ok() && !absl::IsOutOfRange(why)) {
          engine_->NoteSharedStore(why);
          if (Wait(backoff)) return;
        }
        break;  // catch up and watch again
      }
      // (Errors are reported by the engine and retried on the next event.)
      if (engine_->FollowSharedLog().ok()) Trim();
    }
  }
}

void EtcdFollower::Trim() {
  if (absl::Status s = engine_->TrimSharedLog(); !s.ok()) {
    log::Warning("cannot trim the shared log (it grows until a node can)", {{"error", std::string(s.message())}});
  }
}

}  // namespace nftproxy::server
