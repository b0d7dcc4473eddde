#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "manifest/manifest.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

namespace fs = std::filesystem;

// Reads a whole file; NotFoundError naming the path if it cannot.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read ", path, ": ", std::strerror(errno ? errno : ENOENT)));
  }
  std::string data;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ",
                                            std::strerror(err ? err : EIO)));
  }
  return data;
}

bool IsManifestName(const std::string& name) {
  for (const char* ext : {".yaml", ".yml", ".json"}) {
    const size_t len = std::strlen(ext);
    if (name.size() > len && name.compare(name.size() - len, len, ext) == 0) {
      return true;
    }
  }
  return false;
}

// Every manifest file directly in `dir`, sorted by name.
absl::StatusOr<std::vector<std::string>> DirectoryFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  const fs::directory_iterator end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!IsManifestName(name)) continue;
    std::error_code type_ec;
    // Follows symlinks; skips dangling ones and subdirectories.
    if (!fs::is_regular_file(it->path(), type_ec)) continue;
    names.push_back(std::move(name));
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot read directory ", dir, ": ", ec.message()));
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": no manifests (*.yaml, *.yml, *.json) in the directory"));
  }
  std::vector<std::string> files;
  for (const std::string& name : names) files.push_back((fs::path(dir) / name).string());
  return files;
}

absl::Status Read(const std::string& path, manifest_internal::Reader* reader) {
  if (path == "-") {
    std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    if (std::cin.bad()) return absl::NotFoundError("cannot read <stdin>");
    reader->ReadText(text, "<stdin>");
    return reader->Finish("<stdin>");
  }
  std::error_code ec;
  std::vector<std::string> files = {path};
  if (fs::is_directory(path, ec)) {
    absl::StatusOr<std::vector<std::string>> listed = DirectoryFiles(path);
    if (!listed.ok()) return listed.status();
    files = *std::move(listed);
  }
  for (const std::string& file : files) {
    // One file's text at a time: it is what the reader's positions point into.
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) return text.status();
    if (!reader->ReadText(*text, file)) break;
  }
  return reader->Finish(path);
}

}  // namespace

absl::Status ForEachManifest(const std::string& path, const ManifestSink& each, std::vector<std::string>* warnings,
                             const ManifestOptions& options) {
  try {
    manifest_internal::Reader reader([&](ManifestDoc d, size_t) { return each(std::move(d)); }, warnings, options);
    return Read(path, &reader);
  } catch (const std::exception& e) {
    return absl::InternalError(OneLine(absl::StrCat(path, ": cannot load manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(absl::StrCat(path, ": cannot load manifests: unknown error"));
  }
}

absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path,
                                                       std::vector<std::string>* warnings) {
  return manifest_internal::Collect(path, "load", warnings,
                                    [&](manifest_internal::Reader* reader) { return Read(path, reader); });
}

}  // namespace nftproxy::manifest
