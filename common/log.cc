#include "common/log.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/json_text.h"

namespace nftproxy::log {

namespace {

std::atomic<int> min_level{static_cast<int>(Level::kInfo)};
std::atomic<int> line_format{static_cast<int>(Format::kText)};

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarning: return "warning";
    case Level::kError: return "error";
  }
  return "info";
}

// A text value stays bare when it is one plain word, else it is quoted.
std::string TextValue(absl::string_view v) {
  const bool plain = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
    return absl::ascii_isgraph(static_cast<unsigned char>(c)) && c != '"' && c != '=';
  });
  return plain ? std::string(v) : absl::StrCat("\"", absl::CEscape(v), "\"");
}

}  // namespace

absl::StatusOr<Level> ParseLevel(absl::string_view s) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "debug") return Level::kDebug;
  if (l == "info") return Level::kInfo;
  if (l == "warning" || l == "warn") return Level::kWarning;
  if (l == "error") return Level::kError;
  if (int v = 0; absl::SimpleAtoi(l, &v) && v >= 0) return v >= 1 ? Level::kDebug : Level::kInfo;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", s, "\": want one of debug, info, warning, error (or a verbosity number: 0 info, 1 debug)"));
}

absl::StatusOr<Format> ParseFormat(absl::string_view s) {
  if (s == "text") return Format::kText;
  if (s == "json") return Format::kJson;
  return absl::InvalidArgumentError(absl::StrCat("\"", s, "\": want text or json"));
}

void Configure(Level level, Format format) {
  min_level = static_cast<int>(level);
  line_format = static_cast<int>(format);
}

bool Enabled(Level level) { return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed); }

std::string FormatLine(Format format, Level level, absl::string_view time_text, absl::string_view message,
                       const Fields& fields) {
  if (format == Format::kJson) {
    std::string out = absl::StrCat("{\"time\":", JsonQuote(time_text), ",\"level\":\"", LevelName(level),
                                   "\",\"msg\":", JsonQuote(message));
    for (const auto& [k, v] : fields) absl::StrAppend(&out, ",", JsonQuote(k), ":", JsonQuote(v));
    out += "}";
    return out;
  }
  std::string out = absl::StrCat(time_text, " ", absl::AsciiStrToUpper(LevelName(level)), " ", message);
  for (const auto& [k, v] : fields) absl::StrAppend(&out, " ", k, "=", TextValue(v));
  return out;
}

void Event(Level level, absl::string_view message, const Fields& fields) {
  if (!Enabled(level)) return;
  const std::string time_text = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line =
      FormatLine(static_cast<Format>(line_format.load(std::memory_order_relaxed)), level, time_text, message, fields);
  line += "\n";
  // One write per line; a short write (a full pipe) finishes the line.
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

}  // namespace nftproxy::log
