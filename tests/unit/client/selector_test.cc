// -l SELECTOR: kubectl's equality-based forms, matched against labels.
#include "client/selector.h"

#include <gtest/gtest.h>

namespace nftproxy::client {
namespace {

google::protobuf::Map<std::string, std::string> Labels(std::initializer_list<std::pair<std::string, std::string>> kv) {
  google::protobuf::Map<std::string, std::string> m;
  for (const auto& [k, v] : kv) m[k] = v;
  return m;
}

bool Match(const std::string& sel, const google::protobuf::Map<std::string, std::string>& labels) {
  absl::StatusOr<LabelSelector> s = ParseLabelSelector(sel);
  EXPECT_TRUE(s.ok()) << sel << ": " << s.status();
  return s.ok() && s->Matches(labels);
}

TEST(Selector, EqualityForms) {
  const auto web = Labels({{"app", "web"}, {"tier", "front"}});
  const auto db = Labels({{"app", "db"}, {"tier", "db"}});
  const auto none = Labels({});
  EXPECT_TRUE(Match("app=web", web));
  EXPECT_TRUE(Match("app==web", web));
  EXPECT_FALSE(Match("app=web", db));
  EXPECT_FALSE(Match("app=web", none));
  EXPECT_TRUE(Match("tier!=db", web));
  EXPECT_TRUE(Match("tier!=db", none));  // absent counts as "not db", as in kubectl
  EXPECT_FALSE(Match("tier!=db", db));
  EXPECT_TRUE(Match("tier", db));
  EXPECT_FALSE(Match("tier", none));
  EXPECT_TRUE(Match("!tier", none));
  EXPECT_FALSE(Match("!tier", web));
  EXPECT_TRUE(Match("app=web,tier=front", web));
  EXPECT_FALSE(Match("app=web,tier=db", web));
  EXPECT_TRUE(Match(" app = web , !zone ", web));
  EXPECT_TRUE(Match("", none));
  EXPECT_TRUE(Match("app.kubernetes.io/name", Labels({{"app.kubernetes.io/name", "x"}})));
  EXPECT_TRUE(Match("e=", Labels({{"e", ""}})));
}

TEST(Selector, Refusals) {
  for (const char* bad : {"app in (web)", "app notin (a,b)", "=web", "a=b=c", "app=web,", ",app", "a b=c", "!",
                          "-app=x"}) {
    absl::StatusOr<LabelSelector> s = ParseLabelSelector(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << bad;
    EXPECT_EQ(s.status().message().rfind("-l: ", 0), 0u) << s.status();
  }
  EXPECT_NE(ParseLabelSelector("app in (web)").status().message().find("set-based"), absl::string_view::npos);
}

}  // namespace
}  // namespace nftproxy::client
