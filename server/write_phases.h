// The wall time of each phase of one write, for the slow-write log
// (`serve --log-writes-over`).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dataplane/dataplane.h"

namespace nftproxy::server {

class Phases {
 public:
  Phases() : start_(absl::Now()), last_(start_) {}
  // The time since the previous mark was spent in `phase`.
  void Mark(const char* phase) {
    const absl::Time now = absl::Now();
    Add(phase, now - last_);
    last_ = now;
  }
  // Like Mark, the dataplane's call split into its own phases.
  void MarkDataplane(const dp::ApplyResult& r) {
    const absl::Time now = absl::Now();
    Add("compile", r.compile);
    Add("batch", r.batch);
    Add("kernel", r.kernel);
    Add("dataplane other", (now - last_) - r.compile - r.batch - r.kernel);
    last_ = now;
  }
  absl::Duration Total() const { return absl::Now() - start_; }
  // Each phase reached, with its time, in the order first reached.
  const std::vector<std::pair<const char*, absl::Duration>>& all() const { return phases_; }
  // "examine 12.1ms, stage 30ms, ..."
  std::string Describe() const {
    std::string out;
    for (const auto& [phase, d] : phases_) {
      if (d <= absl::ZeroDuration()) continue;
      absl::StrAppend(&out, out.empty() ? "" : ", ", phase, " ",
                      absl::FormatDuration(absl::Trunc(d, absl::Microseconds(100))));
    }
    return out;
  }

 private:
  void Add(const char* phase, absl::Duration d) {
    for (auto& [p, total] : phases_) {
      if (p == phase) {
        total += d;
        return;
      }
    }
    phases_.emplace_back(phase, d);
  }

  absl::Time start_, last_;
  std::vector<std::pair<const char*, absl::Duration>> phases_;
};

}  // namespace nftproxy::server
