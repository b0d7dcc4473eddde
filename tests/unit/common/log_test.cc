// The log line formats and level/format names.
#include "common/log.h"

#include <gtest/gtest.h>

namespace nftproxy::log {
namespace {

TEST(Log, TextLineQuotesWhatIsNotOneWord) {
  EXPECT_EQ(FormatLine(Format::kText, Level::kWarning, "2026-12-01T06:30:49.123Z", "write refused",
                       {{"method", "Apply"}, {"error", "service default/x: bad \"port\""}, {"empty", ""}}),
            "2026-12-01T06:30:49.123Z WARNING write refused method=Apply "
            "error=\"service default/x: bad \\\"port\\\"\" empty=\"\"");
}

TEST(Log, JsonLineEscapes) {
  EXPECT_EQ(FormatLine(Format::kJson, Level::kInfo, "T", "a \"b\"\n", {{"k", "v\x01"}}),
            "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"a \\\"b\\\"\\n\",\"k\":\"v\\u0001\"}");
}

TEST(Log, LevelsAndFormats) {
  EXPECT_EQ(*ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(*ParseLevel("WARN"), Level::kWarning);
  EXPECT_EQ(*ParseLevel("0"), Level::kInfo);
  EXPECT_EQ(*ParseLevel("2"), Level::kDebug);
  EXPECT_FALSE(ParseLevel("loud").ok());
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  EXPECT_FALSE(ParseFormat("xml").ok());
  Configure(Level::kWarning, Format::kText);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  Configure(Level::kInfo, Format::kText);
}

}  // namespace
}  // namespace nftproxy::log
