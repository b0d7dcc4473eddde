#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/manifest.h"
#include "client/yaml_text.h"

namespace nftproxy::client {
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

absl::StatusOr<std::vector<ManifestDoc>> LoadDirectory(const std::string& dir,
                                                       std::vector<std::string>* warnings) {
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

  std::vector<ManifestDoc> docs;
  std::vector<std::string> errors;
  for (const std::string& name : names) {
    const std::string file = (fs::path(dir) / name).string();
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::vector<ManifestDoc>> parsed = ParseDocuments(*text, file, warnings);
    if (!parsed.ok()) {
      if (!absl::IsInvalidArgument(parsed.status())) return parsed.status();
      errors.emplace_back(parsed.status().message());
      continue;
    }
    for (ManifestDoc& d : *parsed) docs.push_back(std::move(d));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  if (docs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no manifests (*.yaml, *.yml, *.json) in directory ", dir));
  }
  return docs;
}

}  // namespace

absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path,
                                                       std::vector<std::string>* warnings) {
  try {
    if (path == "-") {
      std::string text{std::istreambuf_iterator<char>(std::cin),
                       std::istreambuf_iterator<char>()};
      if (std::cin.bad()) {
        return absl::NotFoundError("cannot read <stdin>");
      }
      return ParseManifests(text, "<stdin>", warnings);
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) return DropShadowedEndpoints(LoadDirectory(path, warnings), warnings);
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return text.status();
    return ParseManifests(*text, path, warnings);
  } catch (const std::exception& e) {
    return absl::InternalError(
        OneLine(absl::StrCat(path, ": cannot load manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(path, ": cannot load manifests: unknown error"));
  }
}

}  // namespace nftproxy::client
