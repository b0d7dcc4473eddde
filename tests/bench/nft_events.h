// Counts nf_tables change notifications in a namespace: how many commits a
// request caused and how many objects (tables, chains, rules, sets, set
// elements) those commits added or deleted. Shows that a no-op does no
// kernel work and how big a single change's batch is.
#ifndef NFTPROXY_TESTS_BENCH_NFT_EVENTS_H_
#define NFTPROXY_TESTS_BENCH_NFT_EVENTS_H_

#include <string>

#include "absl/status/status.h"

namespace npxbench {

class NftEventCounter {
 public:
  NftEventCounter() = default;
  NftEventCounter(const NftEventCounter&) = delete;
  NftEventCounter& operator=(const NftEventCounter&) = delete;
  ~NftEventCounter();

  // Subscribes to the nf_tables multicast group inside `netns`. While anyone
  // listens, the kernel builds a notification for every object a commit
  // touches, which is expensive for big batches: listen only around probes.
  absl::Status Open(const std::string& netns);
  void Close();

  struct Counts {
    int commits = 0;   // NFT_MSG_NEWGEN events
    int objects = 0;   // every other event; a set-element event counts each element
    bool overflow = false;
  };
  // Reads whatever is queued, without blocking.
  Counts Drain();

 private:
  int fd_ = -1;
};

}  // namespace npxbench

#endif  // NFTPROXY_TESTS_BENCH_NFT_EVENTS_H_
