// The server's log: one line per event on stderr, with an RFC 3339 UTC
// timestamp and a level, as text (`2026-12-01T06:30:49.123Z INFO msg k=v`)
// or JSON (`{"time":"...","level":"info","msg":"...","k":"v"}`). Lines are
// written with one write(2) each, so concurrent events do not interleave.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class Format { kText, kJson };

// "debug", "info", "warning" (or "warn"), "error"; kubectl-style verbosity
// numbers "0" (info) and "1" or more (debug) too.
absl::StatusOr<Level> ParseLevel(absl::string_view s);
absl::StatusOr<Format> ParseFormat(absl::string_view s);  // "text", "json"

// Process-wide; before any thread logs (serve's flags).
void Configure(Level min_level, Format format);
bool Enabled(Level level);

using Fields = std::vector<std::pair<std::string, std::string>>;
// One event: `message` plus fields in order. Below the configured level:
// nothing.
void Event(Level level, absl::string_view message, const Fields& fields = {});
inline void Info(absl::string_view message, const Fields& fields = {}) { Event(Level::kInfo, message, fields); }
inline void Warning(absl::string_view message, const Fields& fields = {}) {
  Event(Level::kWarning, message, fields);
}
inline void Error(absl::string_view message, const Fields& fields = {}) { Event(Level::kError, message, fields); }

// The line Event would write (without the newline), at `time_text`; for tests.
std::string FormatLine(Format format, Level level, absl::string_view time_text, absl::string_view message,
                       const Fields& fields);

}  // namespace nftproxy::log
