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
// skipped (but an input with no resource at all is an error, as in kubectl). As a convenience, a Service port's `targetPort` given as a
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
#ifndef NFTPROXY_MANIFEST_MANIFEST_H_
#define NFTPROXY_MANIFEST_MANIFEST_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::manifest {

struct ManifestDoc {
  std::string file;  // path as given, or "<stdin>"
  int index = 0;     // 1-based document number within the file
  int item = -1;     // 0-based position in a List's items; -1 outside a List
  nftproxy::v1::Resource resource;
  // Where it came from: "" for nftproxy's own schema, else the Kubernetes
  // object it was translated from, e.g. "v1 Endpoints".
  std::string origin;
};

// Where a resource was written, as errors name it: "web.yaml: document 2" or
// "all.yaml: document 1, items[4]".
std::string DocumentPlace(const ManifestDoc& doc);

struct ManifestOptions {
  // Given to resources that name no namespace (the CLI's -n); "" leaves
  // them for the server's default. Duplicates are found after this.
  std::string default_namespace;
};

// Called with each resource as soon as it is read. An error stops reading
// and is what ForEachManifest returns.
using ManifestSink = std::function<absl::Status(ManifestDoc)>;

// Streams `path` (a file, a directory as LoadManifests reads it, or "-" for
// standard input) document by document, and the items of a `kind: List`
// one by one, so that memory does not grow with the input: a caller that
// serializes each resource into its request and drops it holds only the
// request. Resources come in input order, except those translated from v1
// Endpoints: they come last, and only for services with no EndpointSlice
// anywhere in the input (a proxy uses the slices; both would count twice).
//
// On bad input, reading goes on to report up to 20 problems and returns
// them (InvalidArgument, one line each, "FILE: document N[, items[I]]: ...");
// `each` is not called after the first problem, and what it was given before
// must be dropped. Also InvalidArgument: a resource given twice (naming both
// places) and an input without any resource ("PATH: no objects ...").
// NotFound: a path that cannot be read. Nothing here throws.
absl::Status ForEachManifest(const std::string& path, const ManifestSink& each,
                             std::vector<std::string>* warnings = nullptr, const ManifestOptions& options = {});

// The same for text already in memory; `file` names it in messages. Unlike
// ForEachManifest, a text without resources is no error.
absl::Status ForEachManifestInText(std::string_view text, const std::string& file, const ManifestSink& each,
                                   std::vector<std::string>* warnings = nullptr,
                                   const ManifestOptions& options = {});

// Several files' texts read as one input, as a directory is: a resource given
// twice in any of them is an error naming both places, and v1 Endpoints are
// dropped for services with an EndpointSlice in any of them. `files` are
// (name, text) pairs, read in that order; none at all, or texts without
// resources, are no error.
absl::Status ForEachManifestInTexts(const std::vector<std::pair<std::string, std::string>>& files,
                                    const ManifestSink& each, std::vector<std::string>* warnings = nullptr,
                                    const ManifestOptions& options = {});

// Every resource of `text`, in input order (v1 Endpoints too, where they
// were written). `file` is used in ManifestDoc::file and in error messages.
absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text,
                                                        const std::string& file,
                                                        std::vector<std::string>* warnings = nullptr);

// Every resource of `path` (see ForEachManifest), in input order: a file, a
// directory (every *.yaml, *.yml and *.json directly in it, sorted by name,
// not recursive), or "-" for standard input. Holds them all: for large inputs
// use ForEachManifest. (manifest_files.cc)
absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path,
                                                       std::vector<std::string>* warnings = nullptr);

// A short human name for messages, e.g. "service default/web",
// "endpointslice default/web-1", "workload default/pod-a". An empty namespace
// is shown as "default" (the server's default), an empty name as "(unnamed)".
std::string DescribeResource(const nftproxy::v1::Resource& r);

// ---- shared by manifest.cc and manifest_files.cc ---------------------------

namespace manifest_internal {

// One input's reading state: what ForEachManifest keeps between documents
// and files (the keys seen, the services with slices, the Endpoints held
// back), so that memory grows with the number of resources' names, not with
// their text. (manifest.cc)
class Reader {
 public:
  // `ordered`: hand v1 Endpoints over where they were written and drop the
  // shadowed ones at the end (LoadManifests, which sorts by `ordinal`).
  Reader(const std::function<absl::Status(ManifestDoc, size_t ordinal)>& each, std::vector<std::string>* warnings,
         const ManifestOptions& options);
  ~Reader();
  // Reads one file's text. Returns false once reading must stop (a sink
  // error, see Finish).
  bool ReadText(std::string_view text, const std::string& file);
  // After the last file: the held Endpoints, the pending warnings, and the
  // result. `path` names the input in "no objects" errors ("" for none).
  absl::Status Finish(const std::string& path);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs `read` on a Reader that keeps every document, and returns them in
// input order (v1 Endpoints included); a thrown error becomes
// "NAME: cannot VERB manifests: ...". LoadManifests and ParseManifests.
absl::StatusOr<std::vector<ManifestDoc>> Collect(const std::string& name, const char* verb,
                                                 std::vector<std::string>* warnings,
                                                 const std::function<absl::Status(Reader*)>& read);

}  // namespace manifest_internal

}  // namespace nftproxy::manifest

#endif  // NFTPROXY_MANIFEST_MANIFEST_H_
