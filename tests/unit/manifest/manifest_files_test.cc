// LoadManifests: files, directories and their errors (manifest/manifest_files.cc).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "manifest/manifest.h"
#include "tests/unit/client/temp_dir.h"

namespace nftproxy::manifest {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

using client::test_support::TempDir;

TEST(LoadManifestsTest, DirectoryInSortedOrder) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  dir.Write("b-slice.yml",
            "kind: EndpointSlice\nmetadata: {name: web-1}\nserviceName: web\n"
            "---\nkind: Workload\nmetadata: {name: pod-a}\n");
  dir.Write("a-service.yaml", "kind: Service\nmetadata: {name: web}\n");
  dir.Write("README.md", "not a manifest: [\n");
  dir.Write("notes.txt", "kind: Bogus\n");
  fs::create_directory(fs::path(dir.path()) / "sub.yaml");
  dir.Write("sub.yaml/ignored.yaml", "kind: Bogus\n");

  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(dir.path());
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 3u);
  EXPECT_EQ((*docs)[0].file, (fs::path(dir.path()) / "a-service.yaml").string());
  EXPECT_EQ((*docs)[0].index, 1);
  EXPECT_EQ(DescribeResource((*docs)[0].resource), "service default/web");
  EXPECT_EQ((*docs)[1].file, (fs::path(dir.path()) / "b-slice.yml").string());
  EXPECT_EQ((*docs)[1].index, 1);
  EXPECT_EQ(DescribeResource((*docs)[1].resource), "endpointslice default/web-1");
  EXPECT_EQ((*docs)[2].index, 2);
  EXPECT_EQ(DescribeResource((*docs)[2].resource), "workload default/pod-a");

  // A single file.
  std::string file = (fs::path(dir.path()) / "b-slice.yml").string();
  docs = LoadManifests(file);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0].file, file);
}

TEST(LoadManifestsTest, ErrorsNameTheFile) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string bad = dir.Write("bad.json", "{\"kind\": \"Service\", \"spek\": {}}\n");
  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(dir.path());
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  EXPECT_EQ(docs.status().message().find(bad + ": document 1 (Service): "), 0u)
      << docs.status();
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr("spek"));
}

TEST(LoadManifestsTest, MissingPath) {
  const std::string missing = "/nonexistent/nftproxy-manifest-test.yaml";
  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(missing);
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::IsNotFound(docs.status())) << docs.status();
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr(missing));
}

TEST(LoadManifestsTest, DirectoryWithoutManifests) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  dir.Write("notes.txt", "kind: Service\n");
  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(dir.path());
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr(dir.path()));
}

TEST(LoadManifestsTest, EndpointsShadowedAcrossFilesOfADirectory) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  dir.Write("a-endpoints.yaml",
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\n"
            "subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80}]}]\n");
  dir.Write("b-slice.yaml", "kind: EndpointSlice\nmetadata: {name: web-1}\nserviceName: web\n");
  std::vector<std::string> warnings;
  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(dir.path(), &warnings);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ(DescribeResource((*docs)[0].resource), "endpointslice default/web-1");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("a-endpoints.yaml: document 1 (Kubernetes Endpoints default/web): left out"));
}

}  // namespace
}  // namespace nftproxy::manifest
