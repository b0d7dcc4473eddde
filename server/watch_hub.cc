#include "server/watch_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/resource.h"

namespace nftproxy::server {

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

bool WatchWants(const v1::WatchRequest& req, const Key& key) {
  if (!req.namespace_().empty() && key.ns != req.namespace_()) return false;
  if (req.kinds().empty()) return true;
  for (int k : req.kinds()) {
    if (k == key.kind) return true;
  }
  return false;
}

namespace {

bool Wanted(const v1::WatchRequest& req, const v1::WatchEvent& e) {
  return e.type() == v1::WatchEvent::BOOKMARK || WatchWants(req, KeyOf(e.resource()));
}

}  // namespace

void WatchHub::Reset(uint64_t revision) {
  absl::MutexLock lock(&mu_);
  log_.Reset(revision);
  revision_ = revision;
}

void WatchHub::Publish(std::vector<v1::WatchEvent> events, uint64_t revision) {
  absl::MutexLock lock(&mu_);
  log_.Append(std::move(events));
  revision_ = revision;
  published_.SignalAll();
}

void WatchHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  published_.SignalAll();
}

absl::Status WatchHub::Watch(const v1::WatchRequest& req, const Pager& page, const std::function<bool()>& cancelled,
                             const std::function<bool(const v1::WatchEvent&)>& send) {
  const absl::Status gone = absl::CancelledError("the client went away");
  std::vector<v1::WatchEvent> batch;
  uint64_t cursor = 0;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("the server is shutting down");
    if (req.since_revision() > revision_) {
      return absl::OutOfRangeError(absl::StrCat("revision ", req.since_revision(), " is newer than the server's (",
                                                revision_,
                                                "); list the resources again and resume from the revision that returns"));
    }
    cursor = req.since_revision() == 0 ? revision_ : req.since_revision();
  }
  if (req.since_revision() == 0) {
    // The current state, a page at a time (each read at once); the changes
    // made meanwhile are in the log after `cursor` and follow.
    std::optional<Key> after;
    do {
      page(&after, &batch);
      for (const v1::WatchEvent& e : batch) {
        if (Wanted(req, e) && !send(e)) return gone;
      }
      batch.clear();
      if (cancelled()) return gone;
    } while (after.has_value());
  }
  {
    absl::MutexLock lock(&mu_);
    if (auto s = log_.Since(cursor, &batch); !s.ok()) {
      return req.since_revision() == 0
                 ? absl::OutOfRangeError(absl::StrCat("this watch fell behind and missed changes: ", s.message()))
                 : s;
    }
    cursor = revision_;
  }
  v1::WatchEvent bookmark;
  bookmark.set_type(v1::WatchEvent::BOOKMARK);
  bookmark.set_revision(cursor);
  batch.push_back(bookmark);
  for (;;) {
    for (const v1::WatchEvent& e : batch) {
      if (Wanted(req, e) && !send(e)) return gone;
    }
    batch.clear();
    absl::MutexLock lock(&mu_);
    while (revision_ == cursor && !shutting_down_) {
      if (cancelled()) return gone;
      published_.WaitWithTimeout(&mu_, absl::Milliseconds(200));
    }
    if (shutting_down_) {
      return absl::UnavailableError(absl::StrCat("the server is shutting down; resume from revision ", cursor));
    }
    if (auto s = log_.Since(cursor, &batch); !s.ok()) {
      return absl::OutOfRangeError(absl::StrCat("this watch fell behind and missed changes: ", s.message()));
    }
    cursor = revision_;
  }
}

}  // namespace nftproxy::server
