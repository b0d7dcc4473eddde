// The message inside a Resource (its Service, EndpointSlice or Workload) for
// code that handles every kind alike through reflection: printing a resource
// as a manifest and parsing a manifest into one. The kind table
// (common/resource.h) gives metadata accessors only; these reach the whole
// message through the oneof, whose case numbers are its field numbers.
//
// TODO(common): the server could use BodyOf too (e.g. for field-wise
// comparisons); proposed for common/resource.h in the restructure report.
#pragma once

#include <google/protobuf/message.h>

#include "absl/strings/string_view.h"
#include "common/resource.h"

namespace nftproxy::manifest {

// What `r` holds; null for an empty resource.
const google::protobuf::Message* BodyOf(const v1::Resource& r);
// Sets `r` to hold `kind` (clearing whatever else it held) and returns it.
google::protobuf::Message* MutableBodyOf(const KindInfo& kind, v1::Resource* r);

// The kind a manifest's `kind:` names, spelled exactly as the table's
// manifest name ("Service"); null for any other word. Unlike KindByWord no
// plurals or short names: a manifest spells its kind one way.
const KindInfo* KindByManifest(absl::string_view word);
// The manifest names of every kind, "Service, EndpointSlice or Workload"
// (`last` is " or " / " and "), for messages listing what is accepted.
std::string ManifestKinds(absl::string_view last);

}  // namespace nftproxy::manifest
