// A small in-memory dp::Dataplane and StateStore for the write-engine fuzz
// target (engine_fuzz.cc). The dataplane keeps the model it was given (as
// the FakeDataplane of tests/unit/server/write_engine_test.cc does), can
// refuse the next change on demand, and checks what the server hands it:
// the server validates every change first, so the model must be one the
// kernel can take (services sorted by key, each key once; no frontend
// address and port, and no node port, claimed twice; node ports inside the
// allowed range). A violation aborts: it is a finding about the server's
// validation (server/validate.cc), not about the input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/resource.h"
#include "dataplane/dataplane.h"
#include "dataplane/ruleset.h"
#include "nftproxy/v1/nftproxy.pb.h"
#include "server/state_store.h"

namespace nftproxy::fuzz {

[[noreturn]] inline void Finding(const std::string& what) {
  fprintf(stderr, "FINDING: %s\n", what.c_str());
  abort();
}

class FakeDataplane final : public dp::Dataplane {
 public:
  FakeDataplane(uint16_t node_port_min, uint16_t node_port_max) : min_(node_port_min), max_(node_port_max) {}

  absl::Status Apply(const dp::Model& model, dp::ApplyResult* r) override {
    ++applies;
    if (absl::Status s = TakeFailure(); !s.ok()) return s;
    CheckModel(model, "Apply");
    last = model;
    committed = true;
    return absl::OkStatus();
  }

  // Applies the change to `last`, which stays sorted by key like a full model.
  absl::Status Update(const dp::ModelChange& change, dp::ApplyResult* r) override {
    ++applies;
    if (absl::Status s = TakeFailure(); !s.ok()) return s;
    if (!committed) return absl::FailedPreconditionError("Update before Apply");
    std::set<std::string> keys;
    for (const std::string& k : change.removes) {
      if (!keys.insert(k).second) Finding("ModelChange names " + k + " twice");
    }
    for (const dp::Service& s : change.upserts) {
      if (!keys.insert(s.Key()).second) Finding("ModelChange names " + s.Key() + " twice");
    }
    std::map<std::string, dp::Service> by_key;
    for (const dp::Service& s : last.services) by_key.emplace(s.Key(), s);
    for (const std::string& k : change.removes) by_key.erase(k);
    for (const dp::Service& s : change.upserts) by_key.insert_or_assign(s.Key(), s);
    dp::Model next;
    next.node = last.node;
    for (auto& [k, s] : by_key) next.services.push_back(std::move(s));
    CheckModel(next, "Update");
    last = std::move(next);
    return absl::OkStatus();
  }

  std::string Installed() const override { return committed ? dp::Render(dp::Compile(last, "t")) : ""; }
  std::string InstalledService(const std::string& key) const override {
    if (!committed) return "";
    dp::Model one;
    for (const dp::Service& s : last.services) {
      if (s.Key() == key) one.services.push_back(s);
    }
    return dp::Render(dp::Compile(one, "t"));
  }
  std::unique_ptr<dp::InstalledRuleset> Snapshot() const override {
    if (!committed) return nullptr;
    class Text final : public dp::InstalledRuleset {
     public:
      explicit Text(std::string t) : text_(std::move(t)) {}
      void Render(const std::function<bool(absl::string_view)>& sink) const override {
        const size_t half = text_.size() / 2;
        if (sink(absl::string_view(text_).substr(0, half))) sink(absl::string_view(text_).substr(half));
      }

     private:
      std::string text_;
    };
    return std::make_unique<Text>(Installed());
  }
  std::string Table() const override { return "inet t"; }

  // The next change is refused with `s` (blamed on `service`, "ns/name",
  // when not empty), as a kernel refusal would be.
  void FailNext(absl::Status s, const std::string& service) {
    fail_ = service.empty() ? std::move(s) : dp::BlameService(std::move(s), dp::ServiceOwner(service));
  }

  int applies = 0;
  bool committed = false;
  dp::Model last;

 private:
  absl::Status TakeFailure() {
    absl::Status s = std::move(fail_);
    fail_ = absl::OkStatus();
    return s;
  }

  void CheckModel(const dp::Model& m, const char* call) const {
    std::map<std::tuple<dp::IpAddr, dp::L4Proto, uint16_t>, std::string> frontends;
    std::map<std::pair<dp::L4Proto, uint16_t>, std::string> node_ports;
    for (size_t i = 0; i < m.services.size(); ++i) {
      const dp::Service& s = m.services[i];
      if (i > 0 && !(m.services[i - 1].Key() < s.Key())) {
        Finding(absl::StrCat(call, ": services not sorted by key or given twice: ", m.services[i - 1].Key(), ", ",
                             s.Key()));
      }
      for (const dp::ServicePort& p : s.ports) {
        for (const auto* list : {&s.cluster_ips, &s.external_ips, &s.lb_ips}) {
          for (const dp::IpAddr& ip : *list) {
            auto [it, fresh] = frontends.emplace(std::make_tuple(ip, p.proto, p.port), s.Key());
            if (!fresh) {
              Finding(absl::StrCat(call, ": frontend ", ip.ToString(), " ", dp::L4ProtoName(p.proto), "/", p.port,
                                   " of ", s.Key(), " is also claimed by ", it->second,
                                   " (the server validated this change)"));
            }
          }
        }
        if (p.node_port != 0) {
          if (p.node_port < min_ || p.node_port > max_) {
            Finding(absl::StrCat(call, ": node port ", p.node_port, " of ", s.Key(), " is outside ", min_, "-", max_));
          }
          auto [it, fresh] = node_ports.emplace(std::make_pair(p.proto, p.node_port), s.Key());
          if (!fresh) {
            Finding(absl::StrCat(call, ": node port ", dp::L4ProtoName(p.proto), "/", p.node_port, " of ", s.Key(),
                                 " is also claimed by ", it->second, " (the server validated this change)"));
          }
        }
      }
    }
  }

  uint16_t min_, max_;
  absl::Status fail_;
};

// Keeps what the engine records, to compare with what it serves: Prepare
// writes the touched keys into the pending record (as an ApplyRequest of
// upserts and deletes), Publish applies it.
class FakeStore final : public server::StateStore {
 public:
  Pending Prepare(const server::State& state, const std::vector<Key>& keys) const override {
    v1::ApplyRequest change;
    for (const Key& k : keys) {
      auto it = state.objects.find(k);
      if (it != state.objects.end()) {
        *change.add_upserts() = it->second;
      } else {
        *change.add_deletes() = RefOf(k);
      }
    }
    Pending p;
    p.revision = state.revision;
    p.data = change.SerializeAsString();
    return p;
  }
  absl::Status Publish(Pending pending) override {
    if (!pending.status.ok()) return pending.status;
    v1::ApplyRequest change;
    if (!change.ParseFromString(pending.data)) Finding("FakeStore: a pending record that does not parse");
    for (const v1::ResourceRef& ref : change.deletes()) saved.objects.erase(KeyOf(ref));
    for (const v1::Resource& r : change.upserts()) saved.objects[KeyOf(r)] = r;
    if (pending.revision <= saved.revision) {
      Finding(absl::StrCat("FakeStore: revision ", pending.revision, " published after ", saved.revision));
    }
    saved.revision = pending.revision;
    return absl::OkStatus();
  }
  void Abandon(const Pending&) override {}
  absl::Status Snapshot(const server::State& state) override {
    saved = state;
    return absl::OkStatus();
  }

  server::State saved;
};

}  // namespace nftproxy::fuzz
