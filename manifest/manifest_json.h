// nftproxy's own manifest schema: a document's YAML tree read into the
// message of its kind. Field names are checked against the API on the way,
// so that an unknown one is named with its path and the nearest real name,
// which protobuf's own JSON parser cannot do; so are values (enums in the
// API's or Kubernetes' spelling, e.g. `type: NodePort`, `protocol: tcp`;
// durations as 600, 600s or 10m; whole numbers; strings), so that a bad one
// is named with its place and the valid values. A Service port's
// non-numeric `targetPort` is read as `targetPortName`.
//
// Two ways, one meaning: a valid, plain document fills the message directly
// through reflection (fast: no text is built or parsed); anything else (every
// error, and values only protobuf's JSON mapping defines, e.g. null or
// non-ASCII text) is written out as JSON for protobuf's parser, which is
// what words the errors. So errors are worded in one place only, and the
// direct way need not know them.
#pragma once

#include <yaml-cpp/yaml.h>

#include "absl/status/statusor.h"
#include "manifest/yaml_text.h"
#include "common/resource.h"

namespace nftproxy::manifest {

// The resource of `kind` that `doc` describes; `doc`'s own `kind` and
// `apiVersion` keys are skipped. Errors are InvalidArgument with one line,
// e.g. "line 9, column 3: spec.clusterIP: unknown field (...)": the caller
// puts the file and document in front. yaml-cpp may throw from node access;
// the document reader (manifest.cc) catches that at its edge.
absl::StatusOr<v1::Resource> ConvertOwnDocument(const YamlNode& doc, const KindInfo& kind);
absl::StatusOr<v1::Resource> ConvertOwnDocument(const YAML::Node& doc, const KindInfo& kind);

namespace manifest_json_internal {
// The direct way alone: false (with `*out` half filled) where it leaves the
// document to the JSON way. For tests, which hold the two ways to one result.
bool FillDirectly(const YamlNode& doc, const KindInfo& kind, v1::Resource* out);
// The JSON way alone.
absl::StatusOr<v1::Resource> ConvertViaJson(const YamlNode& doc, const KindInfo& kind);
}  // namespace manifest_json_internal

}  // namespace nftproxy::manifest
