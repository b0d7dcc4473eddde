#include "server/watch_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errors.h"
#include "common/resource.h"

namespace nftproxy::server {

namespace {

// Items one Next returns at most, and log events it looks at per lock hold.
constexpr size_t kBatch = 32;
constexpr size_t kScan = 4096;

bool Wanted(const v1::WatchRequest& req, v1::Kind kind, const std::string& ns) {
  if (!req.namespace_().empty() && ns != req.namespace_()) return false;
  if (req.kinds().empty()) return true;
  for (int k : req.kinds()) {
    if (k == kind) return true;
  }
  return false;
}

std::shared_ptr<const std::string> Bookmark(uint64_t revision) {
  v1::WatchEvent e;
  e.set_type(v1::WatchEvent::BOOKMARK);
  e.set_revision(revision);
  return std::make_shared<const std::string>(e.SerializeAsString());
}

}  // namespace

LoggedEvent LoggedEvent::Of(const v1::WatchEvent& e) {
  LoggedEvent out;
  out.revision = e.revision();
  if (e.has_resource()) {
    Key key = KeyOf(e.resource());
    out.kind = key.kind;
    out.ns = std::move(key.ns);
  }
  out.bytes = std::make_shared<const std::string>(e.SerializeAsString());
  return out;
}

void ChangeLog::Reset(uint64_t revision) {
  begin_ += events_.size();
  events_.clear();
  compacted_ = revision;
}

void ChangeLog::Append(std::vector<LoggedEvent> events) {
  for (LoggedEvent& e : events) events_.push_back(std::move(e));
  if (events_.empty()) return;
  const uint64_t newest = events_.back().revision;
  while (events_.size() > capacity_ && events_.front().revision < newest) {
    compacted_ = std::max(compacted_, events_.front().revision);
    events_.pop_front();
    ++begin_;
  }
}

absl::Status ChangeLog::CheckSince(uint64_t since) const {
  if (since < compacted_) {
    return absl::OutOfRangeError(absl::StrCat(
        "revision ", since, " is too old: the server keeps changes after revision ", compacted_,
        " only; list the resources again (or watch from revision 0) and resume from the revision that returns"));
  }
  return absl::OkStatus();
}

uint64_t ChangeLog::After(uint64_t revision) const {
  auto it = std::upper_bound(events_.begin(), events_.end(), revision,
                             [](uint64_t rev, const LoggedEvent& e) { return rev < e.revision; });
  return begin_ + static_cast<uint64_t>(it - events_.begin());
}

bool WatchWants(const v1::WatchRequest& req, const Key& key) { return Wanted(req, key.kind, key.ns); }

// ---- WatchCursor ---------------------------------------------------------------

WatchCursor::WatchCursor(WatchHub* hub, v1::WatchRequest req, Pager page, std::function<void()> wake)
    : hub_(hub), req_(std::move(req)), pager_(std::move(page)), wake_(std::move(wake)) {}

WatchCursor::~WatchCursor() { hub_->Forget(this); }

void WatchCursor::Close() {
  {
    absl::MutexLock lock(&wake_mu_);
    closed_ = true;
    wake_ = nullptr;
  }
  hub_->Forget(this);
}

void WatchCursor::Wake() {
  absl::MutexLock lock(&wake_mu_);
  if (!closed_ && wake_) wake_();
}

void WatchCursor::ReadPage() {
  {
    absl::MutexLock lock(&wake_mu_);
    if (closed_) return;
  }
  std::optional<Key> after;
  {
    absl::MutexLock lock(&mu_);
    after = page_after_;
  }
  std::vector<v1::WatchEvent> events;
  if (pager_) {
    pager_(&after, &events);
  } else {
    after.reset();
  }
  std::vector<WatchItem> items;
  items.reserve(events.size());
  for (const v1::WatchEvent& e : events) {
    if (!WatchWants(req_, KeyOf(e.resource()))) continue;
    items.push_back(WatchItem{e.revision(), std::make_shared<const std::string>(e.SerializeAsString())});
  }
  {
    absl::MutexLock lock(&mu_);
    page_items_ = std::move(items);
    page_after_ = std::move(after);
    pages_done_ = !page_after_.has_value();
    page_pending_ = false;
  }
  Wake();
}

absl::Status WatchCursor::End(absl::Status s, std::optional<uint64_t> resume) {
  if (resume.has_value()) {
    v1::ErrorDetail detail;
    detail.set_resume_revision(*resume);
    SetErrorDetail(&s, detail);
  }
  phase_ = Phase::kOver;
  ended_ = s;
  return s;
}

std::optional<uint64_t> WatchCursor::ResumeHubLocked() {
  if (phase_ == Phase::kPages) return std::nullopt;
  if (!positioned_) return after_;
  const uint64_t next = next_seq_.load(std::memory_order_relaxed);
  if (next < hub_->log_.begin()) return std::nullopt;  // dropped: cannot be resumed
  // Every event before `next` was delivered (or not wanted).
  if (next < hub_->ready_) return std::max(after_, hub_->log_.at(next).revision - 1);
  return std::max(after_, hub_->log_revision_);
}

std::optional<uint64_t> WatchCursor::ResumeRevision() {
  absl::MutexLock lock(&mu_);
  if (phase_ == Phase::kPages) return std::nullopt;
  absl::MutexLock hub_lock(&hub_->mu_);
  return ResumeHubLocked();
}

bool WatchCursor::CaughtUp() {
  absl::MutexLock lock(&mu_);
  if (phase_ == Phase::kOver) return true;
  if (phase_ == Phase::kPages) return false;
  absl::MutexLock hub_lock(&hub_->mu_);
  return hub_->log_revision_ == hub_->revision_;
}

absl::Status WatchCursor::Next(std::vector<WatchItem>* out) {
  absl::Status s;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kOver) return ended_;
    if (phase_ == Phase::kPages) {
      bool shutting_down = false;
      {
        absl::MutexLock hub_lock(&hub_->mu_);
        shutting_down = hub_->shutting_down_;
      }
      if (shutting_down) {
        s = End(absl::UnavailableError("the server is shutting down (before the initial state was complete: "
                                       "watch again from revision 0)"),
                std::nullopt);
      } else if (!page_items_.empty()) {
        for (WatchItem& item : page_items_) out->push_back(std::move(item));
        page_items_.clear();
        return absl::OkStatus();
      } else if (page_pending_) {
        return absl::OkStatus();  // ReadPage wakes the stream
      } else if (!pages_done_) {
        page_pending_ = true;
        hub_->pager_.Post([self = shared_from_this()] { self->ReadPage(); });
        return absl::OkStatus();
      } else {
        // The initial state is sent; the changes made meanwhile follow,
        // then a BOOKMARK.
        phase_ = Phase::kLog;
        absl::MutexLock hub_lock(&hub_->mu_);
        bookmark_at_ = hub_->revision_;
      }
    }
    if (phase_ == Phase::kLog) s = NextFromLog(out);
  }
  if (!s.ok()) hub_->Forget(this);
  return s;
}

absl::Status WatchCursor::NextFromLog(std::vector<WatchItem>* out) {
  const size_t first = out->size();
  for (;;) {
    absl::MutexLock lock(&hub_->mu_);
    if (hub_->shutting_down_) {
      const std::optional<uint64_t> resume = ResumeHubLocked();
      return End(absl::UnavailableError(
                     resume.has_value() ? absl::StrCat("the server is shutting down; resume from revision ", *resume)
                                        : std::string("the server is shutting down")),
                 resume);
    }
      if (!positioned_) {
      if (auto s = hub_->log_.CheckSince(after_); !s.ok()) {
        return End(absl::OutOfRangeError(absl::StrCat("this watch fell behind and missed changes: ", s.message())),
                   std::nullopt);
      }
      next_seq_.store(hub_->log_.After(after_), std::memory_order_relaxed);
      positioned_ = true;
    }
    uint64_t next = next_seq_.load(std::memory_order_relaxed);
    if (next < hub_->log_.begin()) {
      hub_->ended_out_of_range_.fetch_add(1, std::memory_order_relaxed);
      return End(absl::OutOfRangeError(absl::StrCat(
                     "this watch fell behind and missed changes: the server keeps the changes after revision ",
                     hub_->log_.compacted(),
                     " only; list the resources again (or watch from revision 0) and resume from the revision that "
                     "returns")),
                 std::nullopt);
    }
    if (live_.load(std::memory_order_relaxed)) {
      const uint64_t behind = hub_->ready_ - std::min(hub_->ready_, next);
      if (behind > hub_->options_.buffer_events) {
        const int64_t now = absl::ToUnixNanos(absl::Now());
        int64_t since = slow_since_.load(std::memory_order_relaxed);
        if (since == 0) {
          since = now;
          slow_since_.store(now, std::memory_order_relaxed);
        }
        if (absl::Nanoseconds(now - since) >= hub_->options_.slow_grace) {
          const std::optional<uint64_t> resume = ResumeHubLocked();
          hub_->ended_slow_.fetch_add(1, std::memory_order_relaxed);
          return End(absl::AbortedError(absl::StrCat(
                         "this watch fell ", behind, " events behind the newest change (more than ",
                         hub_->options_.buffer_events, ", --watch-buffer-events, for ",
                         absl::FormatDuration(hub_->options_.slow_grace),
                         "): its client reads too slowly; resume with since_revision=", resume.value_or(0))),
                     resume);
        }
      } else {
        slow_since_.store(0, std::memory_order_relaxed);
      }
    }
    size_t scanned = 0;
    const uint64_t ready = hub_->ready_;
    while (next < ready && out->size() - first < kBatch && scanned < kScan) {
      const LoggedEvent& e = hub_->log_.at(next);
      if (!live_.load(std::memory_order_relaxed) && e.revision > bookmark_at_) break;
      ++next;
      ++scanned;
      if (e.revision <= after_ || !Wanted(req_, e.kind, e.ns)) continue;
      out->push_back(WatchItem{e.revision, e.bytes});
    }
    next_seq_.store(next, std::memory_order_relaxed);
    if (!live_.load(std::memory_order_relaxed) && hub_->log_revision_ >= bookmark_at_ &&
        (next >= ready || hub_->log_.at(next).revision > bookmark_at_)) {
      out->push_back(WatchItem{bookmark_at_, Bookmark(bookmark_at_)});
      live_.store(true, std::memory_order_relaxed);
    }
    if (out->size() > first) return absl::OkStatus();
    if (next >= ready) {
      // Nothing more: Absorb wakes the stream after the next commit.
      hub_->idle_.push_back(shared_from_this());
      return absl::OkStatus();
    }
    // kScan events it does not want: let others in, then go on.
  }
}

// ---- WatchHub --------------------------------------------------------------------

WatchHub::WatchHub(WatchOptions options) : options_(options), log_(options.log_capacity) {}

WatchHub::~WatchHub() {
  // Streams still waiting let go of their cursors outside the lock.
  std::vector<std::shared_ptr<WatchCursor>> idle;
  {
    absl::MutexLock lock(&mu_);
    idle.swap(idle_);
  }
}

void WatchHub::Reset(uint64_t revision) {
  absl::MutexLock lock(&mu_);
  log_.Reset(revision);
  revision_ = revision;
  ready_ = log_.end();
  log_revision_ = revision;
  pending_.clear();
  ++epoch_;
}

void WatchHub::Publish(std::vector<v1::WatchEvent> events, uint64_t revision) {
  std::vector<LoggedEvent> placed(events.size());
  for (size_t i = 0; i < events.size(); ++i) placed[i].revision = revision;
  absl::MutexLock lock(&mu_);
  revision_ = revision;
  const uint64_t first = log_.end();
  log_.Append(std::move(placed));
  pending_.push_back(Commit{std::move(events), revision, first});
  if (!absorb_posted_) {
    absorb_posted_ = true;
    waker_.Post([this] { Absorb(); });
  }
}

void WatchHub::Absorb() {
  for (;;) {
    std::vector<Commit> commits;
    uint64_t epoch = 0;
    {
      absl::MutexLock lock(&mu_);
      if (pending_.empty()) {
        absorb_posted_ = false;
        return;
      }
      commits.swap(pending_);
      epoch = epoch_;
    }
    // Serialized once here, outside the lock; every stream sends these bytes.
    std::vector<std::vector<LoggedEvent>> logged(commits.size());
    for (size_t i = 0; i < commits.size(); ++i) {
      logged[i].reserve(commits[i].events.size());
      for (const v1::WatchEvent& e : commits[i].events) logged[i].push_back(LoggedEvent::Of(e));
    }
    std::vector<std::shared_ptr<WatchCursor>> wake;
    uint64_t ready = 0;
    {
      absl::MutexLock lock(&mu_);
      if (epoch == epoch_) {
        for (size_t i = 0; i < commits.size(); ++i) {
          uint64_t seq = commits[i].first_seq;
          for (LoggedEvent& e : logged[i]) {
            // (Events dropped from the log meanwhile are not needed.)
            if (seq >= log_.begin()) log_.mutable_at(seq) = std::move(e);
            ++seq;
          }
          ready_ = std::max(ready_, seq);
          log_revision_ = commits[i].revision;
        }
      }
      wake.swap(idle_);
      ready = ready_;
    }
    for (const std::shared_ptr<WatchCursor>& c : wake) c->Wake();
    {
      // Note when a stream that is sending (not idle) is first seen too far
      // behind; it ends at its next Next once that lasted slow_grace.
      const int64_t now = absl::ToUnixNanos(absl::Now());
      absl::MutexLock lock(&streams_mu_);
      for (WatchCursor* c : streams_) {
        if (!c->live_.load(std::memory_order_relaxed)) continue;
        if (ready - std::min(ready, c->next_seq_.load(std::memory_order_relaxed)) <= options_.buffer_events) {
          continue;
        }
        int64_t zero = 0;
        c->slow_since_.compare_exchange_strong(zero, now, std::memory_order_relaxed);
      }
    }
    // `wake` releases its cursors here, outside the lock (the last reference
    // forgets its stream).
  }
}

void WatchHub::Shutdown() {
  std::vector<std::shared_ptr<WatchCursor>> wake;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  {
    absl::MutexLock lock(&streams_mu_);
    for (WatchCursor* c : streams_) {
      if (std::shared_ptr<WatchCursor> p = c->weak_from_this().lock()) wake.push_back(std::move(p));
    }
  }
  for (const std::shared_ptr<WatchCursor>& c : wake) c->Wake();
}

void WatchHub::Forget(WatchCursor* c) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(c);
}

uint64_t WatchHub::log_revision() const {
  absl::MutexLock lock(&mu_);
  return log_revision_;
}

size_t WatchHub::streams() const {
  absl::MutexLock lock(&streams_mu_);
  return streams_.size();
}

uint64_t WatchHub::max_lag_events() const {
  uint64_t ready = 0;
  {
    absl::MutexLock lock(&mu_);
    ready = ready_;
  }
  uint64_t lag = 0;
  absl::MutexLock lock(&streams_mu_);
  for (const WatchCursor* c : streams_) {
    if (!c->live_.load(std::memory_order_relaxed)) continue;
    lag = std::max(lag, ready - std::min(ready, c->next_seq_.load(std::memory_order_relaxed)));
  }
  return lag;
}

absl::StatusOr<std::shared_ptr<WatchCursor>> WatchHub::Open(const v1::WatchRequest& req, Pager page,
                                                            std::function<void()> wake) {
  std::shared_ptr<WatchCursor> c(new WatchCursor(this, req, std::move(page), std::move(wake)));
  // Nobody else knows c yet; its lock is taken first all the same (the lock
  // order).
  absl::MutexLock cursor_lock(&c->mu_);
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return absl::UnavailableError("the server is shutting down");
  if (req.since_revision() > revision_) {
    return absl::OutOfRangeError(absl::StrCat("revision ", req.since_revision(), " is newer than the server's (",
                                              revision_,
                                              "); list the resources again and resume from the revision that returns"));
  }
  if (req.since_revision() == 0) {
    // The current state, a page at a time; the changes after the revision
    // it is read from follow.
    c->phase_ = WatchCursor::Phase::kPages;
    c->after_ = revision_;
  } else {
    if (auto s = log_.CheckSince(req.since_revision()); !s.ok()) return s;
    c->phase_ = WatchCursor::Phase::kLog;
    c->after_ = req.since_revision();
    c->bookmark_at_ = revision_;
  }
  absl::MutexLock streams_lock(&streams_mu_);
  if (streams_.size() >= options_.max_streams) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many Watch streams: the server serves at most ", options_.max_streams,
                     " at once (--max-watch-streams); retry later or close some"));
  }
  streams_.insert(c.get());
  return c;
}

}  // namespace nftproxy::server
