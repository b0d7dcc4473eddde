// The first half of a write: looking at each resource of a request (on all
// cores, without changing anything) and staging the result in the desired
// state through a Txn, with the checks against what is stored (source,
// resourceVersion, owner).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/authz.h"
#include "server/desired.h"
#include "server/validate.h"
#include "server/write_phases.h"

namespace nftproxy::server {

// What a write did to one resource (ApplyResponse.outcomes spells it).
enum class Outcome : uint8_t { kCreated, kConfigured, kUnchanged, kDeleted };
const char* OutcomeName(Outcome o);  // "created", "configured", "unchanged", "deleted"

// What the first pass over a request learns about one upsert without
// changing the state, so that it can run on several threads. A resource sent
// as the same bytes as the stored one is known at once (`known`) and never
// parsed; any other is parsed, compared by what it says (UserBytes) and, when
// it differs, validated on its own. The checks against the stored resource
// (source, version, owner) are made here too: the stored resource the
// sequential pass sees is the same unless the key appears twice, which that
// pass refuses first.
struct Incoming {
  absl::string_view wire;  // its bytes in the request
  absl::Status parsed;
  Key key;
  std::string source;    // metadata.source as sent
  uint64_t version = 0;  // metadata.resourceVersion as sent
  bool known = false;
  bool same = false;
  std::unique_ptr<v1::Resource> resource;  // null when known; as stored when it is to be
  std::string user_bytes;
  std::string wire_copy;  // `wire`, owned, when the resource is to be stored
  const v1::Resource* stored = nullptr;
  absl::Status checked;  // source, version and owner
  absl::Status valid;    // ValidateResource, when not the same
};

// A write being staged in place; the engine rolls `txn` back unless the
// kernel took it.
struct Write {
  Write(Txn t, absl::Time start) : txn(std::move(t)), now(start) {}
  Txn txn;
  absl::Time now;
  absl::Time arrived;  // when the write reached the engine, before waiting for the lock
  const Scope* scope = nullptr;  // what the caller may change; null: anything
  std::string source;            // the request's
  bool any_change = false;
  size_t changed = 0;  // keys changed, known once staged
  // The kernel took the change but the state store could not save it: the
  // caller is told (DATA_LOSS), and the change is not rolled back.
  absl::Status unsaved;
  // With a shared log (server/shared_log.h): a change already in the log,
  // committed there at this revision, being applied to this node (not
  // appended again).
  bool replay = false;
  int64_t replay_revision = 0;
  // The log moved past the entry the write was validated against.
  bool lost_race = false;
  Phases phases;
  std::vector<Incoming> incoming;  // the request's upserts
};

// The first pass over the upserts `items` (field `field` of the request) of
// a write by `source` at `now`. For a resource that will be stored it also
// fills in what the server assigns (namespace, owner, the next revision,
// timestamps) and copies its bytes: work that would otherwise wait for the
// sequential pass.
std::vector<Incoming> Examine(const std::vector<absl::string_view>& items, absl::string_view field,
                              const std::string& source, const Desired& d, absl::Time now,
                              const ResourceLimits& limits);

// Stages the upsert that Examine described in `in`, written by `source`. An
// unchanged resource is neither copied nor validated again (it was valid
// when stored).
absl::StatusOr<Outcome> StageUpsert(Incoming& in, const std::string& source, Write* w);

// Stages the deletion of `key` by `source` (resource_version 0: any).
absl::Status StageDelete(const Key& key, uint64_t resource_version, const std::string& source, Write* w);

// `source` as error messages quote it.
std::string SourceName(const std::string& source);

}  // namespace nftproxy::server
