#include "dataplane/nft_dataplane.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

namespace nftproxy::dp {

absl::StatusOr<std::unique_ptr<NftDataplane>> NftDataplane::Create(const std::string& table) {
  auto writer = NftWriter::Create();
  if (!writer.ok()) return writer.status();
  return std::unique_ptr<NftDataplane>(new NftDataplane(table, std::move(*writer)));
}

absl::Status NftDataplane::Apply(const Model& model, ApplyResult* result) {
  Ruleset next = Compile(model, table_, installed_.has_value() ? &*installed_ : nullptr);
  ApplyResult r;
  if (installed_.has_value() && *installed_ == next) {
    if (result) *result = r;
    return absl::OkStatus();
  }
  CommitStats stats;
  absl::Status s = writer_->Commit(installed_.has_value() ? &*installed_ : nullptr, next, &stats);
  if (!s.ok() && installed_.has_value()) {
    // The kernel may have drifted from what we believe (someone deleted or
    // edited our table). One full replacement repairs that; if the change
    // itself is what the kernel refuses, the full batch fails the same way.
    CommitStats full_stats;
    absl::Status full = writer_->Commit(nullptr, next, &full_stats);
    if (full.ok()) {
      stats = full_stats;
      s = absl::OkStatus();
    } else {
      s = full;
    }
  }
  if (!s.ok()) return s;
  installed_ = std::move(next);
  std::set<FlowTarget> udp;
  for (const Service& svc : model.services) {
    for (const ServicePort& p : svc.ports) {
      if (p.proto != L4Proto::kUdp) continue;
      for (const Backend& b : p.backends) udp.insert(FlowTarget{b.addr, b.port});
    }
  }
  std::vector<FlowTarget> gone;
  std::set_difference(udp_targets_.begin(), udp_targets_.end(), udp.begin(), udp.end(), std::back_inserter(gone));
  udp_targets_ = std::move(udp);
  if (!gone.empty()) {
    // The ruleset is committed either way; a failure here only delays the
    // move of old UDP flows until their conntrack entries time out.
    auto n = DeleteUdpFlowsTo(gone);
    if (n.ok()) r.flows_deleted = *n;
    else fprintf(stderr, "nftproxy: deleting UDP flows of removed endpoints: %s\n", std::string(n.status().message()).c_str());
  }
  r.changed = true;
  r.full = stats.full;
  r.messages = stats.messages;
  if (result) *result = r;
  return absl::OkStatus();
}

std::string NftDataplane::Render(const Model& model) const {
  return dp::Render(Compile(model, table_, installed_.has_value() ? &*installed_ : nullptr));
}

std::string NftDataplane::Installed() const {
  return installed_.has_value() ? dp::Render(*installed_) : "";
}

}  // namespace nftproxy::dp
