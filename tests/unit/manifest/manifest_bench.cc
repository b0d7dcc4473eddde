// Not a test: how long reading a large manifest takes and how much memory it
// needs (issue 12). Reads PATH the way `apply` would stream it: each resource
// is serialized into the request as it comes and dropped.
//
//   python3 tests/bench/gen_manifest.py /tmp/m.yaml
//   /usr/bin/time -v build/tests/unit/manifest/manifest_bench /tmp/m.yaml
//   ... --load   (through LoadManifests, which holds every resource)
#include <chrono>
#include <cstring>
#include <iostream>

#include "manifest/manifest.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: manifest_bench PATH [--load]\n";
    return 2;
  }
  const bool load = argc > 2 && std::strcmp(argv[2], "--load") == 0;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> warnings;
  nftproxy::v1::ApplyRequest req;
  size_t count = 0;
  absl::Status s;
  if (load) {
    absl::StatusOr<std::vector<nftproxy::manifest::ManifestDoc>> docs = nftproxy::manifest::LoadManifests(argv[1], &warnings);
    s = docs.status();
    if (docs.ok()) {
      for (const auto& d : *docs) *req.add_upserts() = d.resource;
      count = docs->size();
    }
  } else {
    s = nftproxy::manifest::ForEachManifest(
        argv[1],
        [&](nftproxy::manifest::ManifestDoc d) {
          req.add_upserts()->Swap(&d.resource);
          ++count;
          return absl::OkStatus();
        },
        &warnings);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!s.ok()) {
    std::cerr << "error: " << s.message().substr(0, 2000) << "\n";
    return 1;
  }
  std::cout << count << " resources, " << warnings.size() << " warnings, request " << req.ByteSizeLong()
            << " bytes, read in " << seconds << " s\n";
  return 0;
}
