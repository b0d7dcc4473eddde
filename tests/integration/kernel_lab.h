// Shared by the C++ tests that drive the real kernel (writer_test,
// random_sync_test, netlink_fault_test): each runs as one process in a
// private network namespace of its own, made in main() before any thread
// exists; helpers to run `nft` there and to compare its listings.
#pragma once

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "dataplane/model.h"

namespace nftproxy::kernel_lab {

// Why this process is not in a private network namespace; "" when it is.
inline std::string& NetnsError() {
  static std::string error;
  return error;
}

// In a test: fails under CI=true, else skips, when there is no private
// network namespace (the caller returns when the test is skipped or failed).
inline void RequireNetns() {
  if (NetnsError().empty()) return;
  const char* ci = getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") FAIL() << "cannot run under CI=true: " << NetnsError();
  GTEST_SKIP() << NetnsError();
}

// main() of these tests: the namespace first, before any thread exists (it
// holds for this process and the nft children it runs).
inline int Main(int argc, char** argv) {
  if (geteuid() != 0) {
    NetnsError() = "needs root: it runs in a private network namespace and writes nftables tables";
  } else if (unshare(CLONE_NEWNET) != 0) {
    NetnsError() = std::string("unshare(CLONE_NEWNET) failed: ") + strerror(errno);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// Runs `cmd` with sh; its stdout and stderr.
inline std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// Normalising listings. nft prints a table's sets, maps and chains in the
// kernel's creation order: a chain that an incremental commit added comes
// after those of the first full commit, while Render() sorts them. That
// order means nothing (chains are referenced by name, base chains ordered by
// priority), so the top-level blocks are compared as a sorted collection.
// Inside a block everything is compared line by line, except that each
// `elements = { ... }` (wrapped over several lines by nft, in the kernel's
// hash order for hash sets) becomes its elements, one per line, sorted.
// Each line is prefixed with its block, so that diffs read on their own.

inline std::vector<std::string> Normalize(const std::string& text, bool sort_blocks = true) {
  std::vector<std::vector<std::string>> blocks;  // [0]: lines outside any block
  blocks.emplace_back();
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::string block;  // "chain svc4/..." / "map backends4-0"; "" between blocks
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (t.empty()) continue;
    if (absl::StartsWith(t, "elements = {")) {
      std::string all(t);
      while (!absl::EndsWith(absl::StripAsciiWhitespace(all), "}") && i + 1 < lines.size()) {
        absl::StrAppend(&all, " ", absl::StripAsciiWhitespace(lines[++i]));
      }
      absl::string_view body = absl::StripAsciiWhitespace(all);
      body.remove_prefix(strlen("elements = {"));
      if (absl::EndsWith(body, "}")) body.remove_suffix(1);
      std::vector<std::string> elems;
      for (absl::string_view e : absl::StrSplit(body, ',')) {
        e = absl::StripAsciiWhitespace(e);
        if (!e.empty()) elems.push_back(absl::StrCat(block, " | element ", e));
      }
      std::sort(elems.begin(), elems.end());
      blocks.back().insert(blocks.back().end(), elems.begin(), elems.end());
      continue;
    }
    if (line.size() > 1 && line[0] == '\t' && line[1] != '\t' && absl::EndsWith(t, "{")) {
      block = std::string(absl::StripSuffix(t, " {"));
      blocks.push_back({std::string(t)});
      continue;
    }
    if (block.empty()) {
      blocks[0].push_back(std::string(t));
      continue;
    }
    blocks.back().push_back(absl::StrCat(block, " | ", t));
    if (line == "\t}") block.clear();
  }
  auto by_header = [](const std::vector<std::string>& a, const std::vector<std::string>& b) { return a[0] < b[0]; };
  if (sort_blocks) std::stable_sort(blocks.begin() + 1, blocks.end(), by_header);
  std::vector<std::string> out;
  for (auto& b : blocks) out.insert(out.end(), b.begin(), b.end());
  return out;
}

// Test services: an IPv4 address from a number, and service "default/svc-NNNN"
// with cluster IP 198.19.0.1 + i and `endpoints` endpoints on port 8080,
// the j-th at address `first` + (i * 4 + j) % wrap.
inline dp::IpAddr V4(uint32_t a) {
  dp::IpAddr ip;
  ip.family = dp::Family::kV4;
  for (int i = 0; i < 4; ++i) ip.bytes[i] = static_cast<uint8_t>(a >> (24 - 8 * i));
  return ip;
}

inline dp::Service TestService(int i, int endpoints, uint32_t first, uint32_t wrap = 1u << 24) {
  dp::Service s;
  s.ns = "default";
  s.name = absl::StrFormat("svc-%04d", i);
  s.cluster_ips.push_back(V4(0xc6130000u + 1 + i));  // 198.19.0.1 + i
  dp::ServicePort p;
  p.port = 80;
  for (int j = 0; j < endpoints; ++j) {
    p.backends.push_back(dp::Backend{V4(first + static_cast<uint32_t>(i * 4 + j) % wrap), 8080});
  }
  s.ports.push_back(p);
  return s;
}

}  // namespace nftproxy::kernel_lab
