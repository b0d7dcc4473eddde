// Loading of resource manifests (YAML or JSON) into nftproxy.v1.Resource.
//
// A manifest document is a mapping with a top-level `kind` (Service,
// EndpointSlice or Workload), an optional `apiVersion` (nftproxy.io/v1), and
// the remaining fields of the message of that kind in protobuf's JSON mapping
// (lowerCamelCase field names, enum values by name):
//
//   kind: Service
//   metadata: {namespace: default, name: web}
//   spec:
//     clusterIps: ["198.19.0.10"]
//     ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
//
// Several documents may share a file, separated by `---`; empty documents are
// skipped. As a convenience, a Service port's `targetPort` given as a
// non-numeric string (e.g. `targetPort: http`) is read as `targetPortName`.
// Field names are checked against the API: an unknown one is an error that
// names its path (e.g. `spec.clusterIP: unknown field ... did you mean
// "clusterIps"?`).
//
// Kubernetes' own manifests are accepted too (apiVersion v1 Service and
// Endpoints, discovery.k8s.io/v1 EndpointSlice, and `kind: List` of them, as
// `kubectl get -o yaml` prints them): see k8s_manifest.h. When one input has
// both v1 Endpoints and EndpointSlices for a service, the Endpoints are left
// out with a warning (a proxy uses the slices; both would count twice).
//
// Errors are absl::InvalidArgumentError with one line per problem, each
// beginning with "FILE: document N"; a file that cannot be read gives
// absl::NotFoundError. Warnings (ignored Kubernetes fields) are lines in the
// same form. Nothing here throws.
#ifndef NFTPROXY_CLIENT_MANIFEST_H_
#define NFTPROXY_CLIENT_MANIFEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::client {

struct ManifestDoc {
  std::string file;  // path as given, or "<stdin>"
  int index = 0;     // 1-based document number within the file
  nftproxy::v1::Resource resource;
  // Where it came from: "" for nftproxy's own schema, else the Kubernetes
  // object it was translated from, e.g. "v1 Endpoints".
  std::string origin;
};

// Parses `text`: one or more YAML (or JSON) documents separated by '---'.
// Empty documents are skipped (but still counted for `index`). `file` is used
// in ManifestDoc::file and in error messages.
absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text,
                                                        const std::string& file,
                                                        std::vector<std::string>* warnings = nullptr);

// Loads `path`: a file, a directory (every *.yaml, *.yml and *.json directly
// in it, sorted by name, not recursive), or "-" for standard input.
// (manifest_files.cc)
absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path,
                                                       std::vector<std::string>* warnings = nullptr);

// A short human name for messages, e.g. "service default/web",
// "endpointslice default/web-1", "workload default/pod-a". An empty namespace
// is shown as "default" (the server's default), an empty name as "(unnamed)".
std::string DescribeResource(const nftproxy::v1::Resource& r);

// The two steps of ParseManifests, apart, because a directory is parsed file
// by file but its v1 Endpoints are shadowed by slices in any of its files.
// ParseDocuments may throw (yaml-cpp); ParseManifests and LoadManifests catch.
absl::StatusOr<std::vector<ManifestDoc>> ParseDocuments(std::string_view text, const std::string& file,
                                                        std::vector<std::string>* warnings);
absl::StatusOr<std::vector<ManifestDoc>> DropShadowedEndpoints(absl::StatusOr<std::vector<ManifestDoc>> docs,
                                                               std::vector<std::string>* warnings);

}  // namespace nftproxy::client

#endif  // NFTPROXY_CLIENT_MANIFEST_H_
