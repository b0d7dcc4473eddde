#include "server/file_store.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/wire_format_lite.h>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/crc32c.h"
#include "common/log.h"

namespace nftproxy::server {

namespace {

constexpr char kSnapshotMagic[] = "NFTPXSNP";  // 8 bytes, without the terminating NUL
constexpr char kJournalMagic[] = "NFTPXJNL";
constexpr char kGroupMagic[] = "NPXG";  // 4 bytes
constexpr size_t kMagicBytes = 8;
constexpr size_t kGroupMagicBytes = 4;
// Every event in a group (and every format 1 record) starts with its size, a little-endian uint32.
constexpr size_t kLengthBytes = 4;
constexpr uint32_t kMaxFormat1Record = 256u << 20;

void Put32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void Put64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint32_t Crc(const char* p, size_t n) { return Crc32cExtend(0, p, n); }

std::string Hex(absl::string_view raw) { return absl::BytesToHexString(raw); }

absl::Status ErrnoError(const char* what, const std::string& path, int err = errno) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", strerror(err)));
}

// Writes all of `data` at the file offset (the end, with O_APPEND). The first write() gets the whole buffer, so
// a journal group normally goes out in one call; looping covers short writes (a signal, a nearly full disk).
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("writing", path);
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, const std::string& path, std::string* out) {
  out->clear();
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) out->reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("reading", path);
    }
    out->append(buf, static_cast<size_t>(n));
  }
}

// NotFound when the file does not exist.
absl::Status ReadFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    return ErrnoError("opening", path);
  }
  absl::Status s = ReadAll(fd, path, out);
  close(fd);
  return s;
}

// ---- encoding ------------------------------------------------------------------------------------------------

// A v1::ListResponse holding every resource, written field by field rather than through a ListResponse message
// (the same bytes, without copying each resource into it), after `header` bytes left for the caller.
std::string SerializeSnapshotPayload(const State& state, size_t header) {
  using google::protobuf::internal::WireFormatLite;
  size_t total = 0;
  std::vector<uint32_t> sizes;
  sizes.reserve(state.objects.size());
  for (const auto& [key, r] : state.objects) {
    const size_t n = r.ByteSizeLong();  // also caches the sizes for the write below
    sizes.push_back(static_cast<uint32_t>(n));
    total += 1 + google::protobuf::io::CodedOutputStream::VarintSize32(static_cast<uint32_t>(n)) + n;
  }
  if (state.revision != 0) total += 1 + google::protobuf::io::CodedOutputStream::VarintSize64(state.revision);
  std::string out;
  out.resize(header + total);
  uint8_t* p = reinterpret_cast<uint8_t*>(out.data() + header);
  size_t i = 0;
  for (const auto& [key, r] : state.objects) {
    p = WireFormatLite::WriteTagToArray(v1::ListResponse::kResourcesFieldNumber,
                                        WireFormatLite::WIRETYPE_LENGTH_DELIMITED, p);
    p = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(sizes[i++], p);
    p = r.SerializeWithCachedSizesToArray(p);
  }
  if (state.revision != 0) {
    p = WireFormatLite::WriteUInt64ToArray(v1::ListResponse::kRevisionFieldNumber, state.revision, p);
  }
  return out;
}

// Appends one event: its size, then the event.
absl::Status AppendEvent(const v1::WatchEvent& e, std::string* out) {
  const size_t n = e.ByteSizeLong();
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::ResourceExhaustedError(absl::StrCat("a journal record of ", n, " bytes is too large"));
  }
  const size_t at = out->size();
  out->resize(at + kLengthBytes + n);
  Put32(&(*out)[at], static_cast<uint32_t>(n));
  e.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&(*out)[at + kLengthBytes]));
  return absl::OkStatus();
}

// Fills in the header of a group whose payload follows it in `group`.
void SealGroup(std::string* group, uint64_t revision, uint64_t previous, uint64_t snapshot_revision,
               absl::string_view history) {
  char* h = group->data();
  memcpy(h, kGroupMagic, kGroupMagicBytes);
  Put32(h + 4, static_cast<uint32_t>(group->size() - kGroupHeaderBytes));
  Put64(h + 8, revision);
  Put64(h + 16, previous);
  Put64(h + 24, snapshot_revision);
  memcpy(h + 32, history.data(), kHistoryBytes);
  Put32(h + 48, Crc(h + kGroupHeaderBytes, group->size() - kGroupHeaderBytes));
  Put32(h + 52, Crc(h, 52));
}

// ---- decoding ------------------------------------------------------------------------------------------------

bool AllZero(absl::string_view s) { return std::all_of(s.begin(), s.end(), [](char c) { return c == '\0'; }); }

// Where the run of zero bytes that ends the data starts (data.size() when the last byte is not zero).
uint64_t ZeroTailStart(absl::string_view data) {
  size_t i = data.size();
  while (i > 0 && data[i - 1] == '\0') --i;
  return i;
}

void ApplyEvent(v1::WatchEvent& e, State* state) {
  Key key = KeyOf(e.resource());
  if (e.type() == v1::WatchEvent::DELETE) {
    state->objects.erase(key);
  } else {
    state->objects[std::move(key)] = std::move(*e.mutable_resource());
  }
}

// One committed change read from the journal.
struct Group {
  uint64_t offset = 0;
  uint64_t revision = 0;
  uint64_t previous = 0;  // format 1: revision - 1 (format 1 journals are contiguous)
  std::vector<v1::WatchEvent> events;
};

struct SnapshotRead {
  bool intact = false;  // the whole file checks out
  State state;
  std::string history;  // raw; format 2
  bool header_intact = false;
  uint64_t header_revision = 0;
};

struct JournalRead {
  bool header_intact = false;  // format 2
  std::string history;        // raw
  uint64_t base = 0;
  bool zeros = false;  // no magic, non-empty, nothing but zero bytes
  std::vector<Group> groups;  // the groups that check out, in order, up to the first problem
  bool damaged = false;
  uint64_t newest_revision = 0;  // of every intact group header, also past the damage
  // Intact group headers past the damage (found by scanning for the next intact header).
  std::vector<uint64_t> revisions_after_damage;
};

class Reader {
 public:
  explicit Reader(StateReport* report) : r_(report) {}

  void Fail(const std::string& path, uint64_t offset, std::string what, bool unsupported = false) {
    if (r_->problem) return;
    r_->problem = StateProblem{path, offset, std::move(what), unsupported};
  }

  void ReadSnapshot(const std::string& data, SnapshotRead* out);
  void ReadJournal(const std::string& data, JournalRead* out);

 private:
  void ReadJournalV2(const std::string& data, JournalRead* out);
  void ReadJournalV1(const std::string& data, JournalRead* out);
  // Parses the events of a format 2 group; false (and a problem) when they do not parse.
  bool ParseGroupEvents(absl::string_view payload, uint64_t at, Group* g);

  StateReport* r_;
};

// The resources of a snapshot (format 1: the whole file); an error message when they do not parse.
std::optional<std::string> ParseSnapshotPayload(absl::string_view payload, State* out) {
  v1::ListResponse saved;
  if (payload.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !saved.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return "the resources do not parse (not a serialized nftproxy.v1.ListResponse)";
  }
  // What nftproxy writes has nothing else (bytes that happen to parse, with fields of their own, are not it).
  if (!saved.GetReflection()->GetUnknownFields(saved).empty() || !saved.next_page_token().empty()) {
    return "not what nftproxy writes (fields besides the resources and the revision)";
  }
  State state;
  state.revision = saved.revision();
  for (v1::Resource& r : *saved.mutable_resources()) {
    if (KindOf(r) == v1::KIND_UNSPECIFIED) return "a resource without a kind";
    Key key = KeyOf(r);
    state.objects[std::move(key)] = std::move(r);
  }
  *out = std::move(state);
  return std::nullopt;
}

void Reader::ReadSnapshot(const std::string& data, SnapshotRead* out) {
  StateFileReport& f = r_->snapshot;
  const std::string& path = f.path;
  if (data.empty()) {
    Fail(path, 0, "empty: a state file is never empty (it was truncated, or replaced by an empty file)");
    return;
  }
  const size_t head = std::min(data.size(), kMagicBytes);
  if (data.compare(0, head, kSnapshotMagic, head) != 0) {
    // No magic: format 1, a bare ListResponse, or something else.
    if (std::optional<std::string> err = ParseSnapshotPayload(data, &out->state)) {
      Fail(path, 0, absl::StrCat("neither a format 2 state file (no \"", kSnapshotMagic,
                                 "\" magic) nor a format 1 one (", *err, ")"));
      return;
    }
    f.format = 1;
    f.revision = out->state.revision;
    f.resources = out->state.objects.size();
    out->intact = true;
    out->header_intact = true;
    out->header_revision = f.revision;
    return;
  }
  if (data.size() < kSnapshotHeaderBytes) {
    Fail(path, data.size(), absl::StrCat("the header is cut short: ", data.size(), " of ", kSnapshotHeaderBytes,
                                         " bytes"));
    return;
  }
  const char* h = data.data();
  if (Get32(h + 60) != Crc(h, 60)) {
    Fail(path, 0, "the header's checksum does not match (bytes 0-63)");
    return;
  }
  const uint32_t version = Get32(h + 8);
  if (version != kStateFormat) {
    Fail(path, 8,
         absl::StrCat("format ", version, ", written by a newer nftproxy; this one reads formats 1 and ",
                      kStateFormat),
         /*unsupported=*/version > kStateFormat);
    return;
  }
  out->header_intact = true;
  out->history.assign(h + 16, kHistoryBytes);
  out->header_revision = Get64(h + 32);
  f.format = 2;
  f.history = Hex(out->history);
  f.revision = out->header_revision;
  f.resources = Get32(h + 52);
  if (Get32(h + 12) != kSnapshotHeaderBytes) {
    Fail(path, 12, absl::StrCat("header size ", Get32(h + 12), ", format 2 has ", kSnapshotHeaderBytes));
    return;
  }
  const uint64_t payload = Get64(h + 40);
  if (payload != data.size() - kSnapshotHeaderBytes) {
    Fail(path, std::min<uint64_t>(data.size(), kSnapshotHeaderBytes + payload),
         absl::StrCat("the file holds ", data.size() - kSnapshotHeaderBytes, " bytes of resources, its header says ",
                      payload, payload > data.size() - kSnapshotHeaderBytes ? " (cut short)" : " (bytes added)"));
    return;
  }
  if (Get32(h + 48) != Crc(h + kSnapshotHeaderBytes, payload)) {
    Fail(path, kSnapshotHeaderBytes,
         absl::StrCat("the resources' checksum does not match (bytes ", kSnapshotHeaderBytes, "-", data.size() - 1,
                      ")"));
    return;
  }
  if (std::optional<std::string> err =
          ParseSnapshotPayload(absl::string_view(data).substr(kSnapshotHeaderBytes), &out->state)) {
    Fail(path, kSnapshotHeaderBytes, *err);
    return;
  }
  if (out->state.revision != out->header_revision || out->state.objects.size() != f.resources) {
    Fail(path, kSnapshotHeaderBytes,
         absl::StrCat("the resources say revision ", out->state.revision, " and ", out->state.objects.size(),
                      " resources, the header revision ", out->header_revision, " and ", f.resources));
    return;
  }
  out->intact = true;
}

bool Reader::ParseGroupEvents(absl::string_view payload, uint64_t at, Group* g) {
  const std::string& path = r_->journal.path;
  size_t off = 0;
  while (off < payload.size()) {
    if (payload.size() - off < kLengthBytes) {
      Fail(path, at, absl::StrCat("the group of revision ", g->revision, " does not parse (an event's size is cut)"));
      return false;
    }
    const uint32_t len = Get32(payload.data() + off);
    if (len > payload.size() - off - kLengthBytes) {
      Fail(path, at, absl::StrCat("the group of revision ", g->revision, " does not parse (an event runs past it)"));
      return false;
    }
    v1::WatchEvent e;
    if (!e.ParseFromArray(payload.data() + off + kLengthBytes, static_cast<int>(len)) ||
        (e.type() != v1::WatchEvent::UPSERT && e.type() != v1::WatchEvent::DELETE) ||
        KindOf(e.resource()) == v1::KIND_UNSPECIFIED || e.revision() != g->revision) {
      Fail(path, at, absl::StrCat("the group of revision ", g->revision, " holds an event that is not a change of it"));
      return false;
    }
    g->events.push_back(std::move(e));
    off += kLengthBytes + len;
  }
  return true;
}

void Reader::ReadJournal(const std::string& data, JournalRead* out) {
  if (data.empty()) return;
  if (data.size() >= kMagicBytes && data.compare(0, kMagicBytes, kJournalMagic) == 0) {
    ReadJournalV2(data, out);
  } else if (AllZero(data)) {
    out->zeros = true;  // judged with the snapshot (format 1 left such tails)
  } else {
    ReadJournalV1(data, out);
  }
}

void Reader::ReadJournalV2(const std::string& data, JournalRead* out) {
  StateFileReport& f = r_->journal;
  const std::string& path = f.path;
  if (data.size() < kJournalHeaderBytes) {
    Fail(path, data.size(), absl::StrCat("the header is cut short: ", data.size(), " of ", kJournalHeaderBytes,
                                         " bytes"));
    out->damaged = true;
    return;
  }
  const char* h = data.data();
  if (Get32(h + 44) != Crc(h, 44)) {
    Fail(path, 0, "the header's checksum does not match (bytes 0-47)");
    out->damaged = true;
    return;
  }
  const uint32_t version = Get32(h + 8);
  if (version != kStateFormat) {
    Fail(path, 8,
         absl::StrCat("format ", version, ", written by a newer nftproxy; this one reads formats 1 and ",
                      kStateFormat),
         version > kStateFormat);
    out->damaged = true;
    return;
  }
  if (Get32(h + 12) != kJournalHeaderBytes) {
    Fail(path, 12, absl::StrCat("header size ", Get32(h + 12), ", format 2 has ", kJournalHeaderBytes));
    out->damaged = true;
    return;
  }
  f.format = 2;
  out->header_intact = true;
  out->history.assign(h + 16, kHistoryBytes);
  out->base = Get64(h + 32);
  f.history = Hex(out->history);
  f.revision = out->base;
  f.good_bytes = kJournalHeaderBytes;
  out->newest_revision = out->base;

  const uint64_t size = data.size();
  const uint64_t zeros_from = ZeroTailStart(data);
  uint64_t off = kJournalHeaderBytes;
  uint64_t last = out->base;
  auto header_ok = [&](uint64_t at) {
    return size - at >= kGroupHeaderBytes && data.compare(at, kGroupMagicBytes, kGroupMagic) == 0 &&
           Get32(h + at + 52) == Crc(h + at, 52);
  };
  // After damage: the intact groups that follow, found by their headers (for the report of what is lost).
  auto scan_past = [&](uint64_t from) {
    out->damaged = true;
    for (uint64_t at = from; at + kGroupHeaderBytes <= size; ++at) {
      if (h[at] != kGroupMagic[0] || !header_ok(at)) continue;
      const uint64_t end = at + kGroupHeaderBytes + Get32(h + at + 4);
      if (end > size || Get32(h + at + 48) != Crc(h + at + kGroupHeaderBytes, end - at - kGroupHeaderBytes)) continue;
      if (memcmp(h + at + 32, out->history.data(), kHistoryBytes) != 0) continue;
      out->revisions_after_damage.push_back(Get64(h + at + 8));
      out->newest_revision = std::max(out->newest_revision, Get64(h + at + 8));
      at = end - 1;
    }
  };
  while (off < size) {
    const uint64_t left = size - off;
    // A torn tail: the last append did not finish.
    if (left < kGroupHeaderBytes) {
      f.torn_bytes = left;
      break;
    }
    if (!header_ok(off)) {
      if (zeros_from < off + kGroupHeaderBytes) {
        f.torn_bytes = left;  // zeros from inside this header to the end of the file
        break;
      }
      Fail(path, off,
           data.compare(off, kGroupMagicBytes, kGroupMagic) != 0
               ? absl::StrCat("no group starts here (no \"", kGroupMagic, "\" magic) and the file goes on")
               : "the group header's checksum does not match");
      scan_past(off + 1);
      break;
    }
    Group g;
    g.offset = off;
    g.revision = Get64(h + off + 8);
    g.previous = Get64(h + off + 16);
    const uint64_t base = Get64(h + off + 24);
    const uint64_t end = off + kGroupHeaderBytes + Get32(h + off + 4);
    if (end > size) {
      f.torn_bytes = left;  // the group runs past the end of the file
      break;
    }
    out->newest_revision = std::max(out->newest_revision, g.revision);
    const absl::string_view payload(h + off + kGroupHeaderBytes, end - off - kGroupHeaderBytes);
    if (Get32(h + off + 48) != Crc(payload.data(), payload.size())) {
      if (zeros_from < end) {
        f.torn_bytes = left;  // zeros from inside this group to the end of the file
        break;
      }
      Fail(path, off,
           absl::StrCat("the checksum of the group of revision ", g.revision, " (bytes ", off, "-", end - 1,
                        ") does not match"));
      scan_past(end);
      break;
    }
    if (memcmp(h + off + 32, out->history.data(), kHistoryBytes) != 0) {
      Fail(path, off,
           absl::StrCat("the group of revision ", g.revision, " belongs to another state history (",
                        Hex(absl::string_view(h + off + 32, kHistoryBytes)), ", the journal's is ", f.history, ")"));
      scan_past(end);
      break;
    }
    if (base != out->base) {
      Fail(path, off,
           absl::StrCat("the group of revision ", g.revision, " follows the snapshot of revision ", base,
                        ", the journal's header says ", out->base));
      scan_past(end);
      break;
    }
    if (g.previous != last || g.revision <= g.previous) {
      Fail(path, off,
           absl::StrCat("a gap: the group of revision ", g.revision, " follows revision ", g.previous,
                        ", but the journal is at revision ", last, " before it"));
      out->revisions_after_damage.push_back(g.revision);
      scan_past(end);
      break;
    }
    if (!ParseGroupEvents(payload, off, &g)) {
      scan_past(end);
      break;
    }
    last = g.revision;
    out->groups.push_back(std::move(g));
    off = end;
    f.good_bytes = end;
  }
}

// Format 1: records (size + WatchEvent), groups ended by a BOOKMARK. A torn tail: a record running past the end,
// a partial size, a group without its BOOKMARK, or zeros. Anything else that does not parse is damage.
void Reader::ReadJournalV1(const std::string& data, JournalRead* out) {
  StateFileReport& f = r_->journal;
  const std::string& path = f.path;
  f.format = 1;
  std::vector<v1::WatchEvent> pending;
  uint64_t group_start = 0;
  uint64_t good_end = 0;
  size_t off = 0;
  auto damaged = [&](const std::string& what) {
    Fail(path, off, absl::StrCat("neither a format 2 journal (no \"", kJournalMagic,
                                 "\" magic) nor a format 1 one (its record here ", what, ")"));
    out->damaged = true;
  };
  while (data.size() - off >= kLengthBytes) {
    const uint32_t len = Get32(data.data() + off);
    const size_t left = data.size() - off - kLengthBytes;
    // A record is one resource, which came in one request (64 MiB by default): a larger size is not the start
    // of an unfinished record but something else (a format 2 journal whose magic is damaged reads as ~1.3 GB).
    if (len > kMaxFormat1Record) return damaged(absl::StrCat("claims ", len, " bytes, more than any record"));
    if (len > left) break;
    if (len == 0 && AllZero(absl::string_view(data).substr(off))) break;
    v1::WatchEvent e;
    if (!e.ParseFromArray(data.data() + off + kLengthBytes, static_cast<int>(len))) return damaged("is not a WatchEvent");
    if (!pending.empty() && e.revision() != pending.front().revision()) {
      return damaged(absl::StrCat("has revision ", e.revision(), " inside a group of revision ", pending.front().revision()));
    }
    if (pending.empty()) group_start = off;
    switch (e.type()) {
      case v1::WatchEvent::UPSERT:
      case v1::WatchEvent::DELETE:
        if (KindOf(e.resource()) == v1::KIND_UNSPECIFIED) return damaged("is an event without a resource");
        pending.push_back(std::move(e));
        break;
      case v1::WatchEvent::BOOKMARK: {
        Group g;
        g.offset = pending.empty() ? off : group_start;
        g.revision = e.revision();
        g.previous = g.revision - 1;
        g.events = std::move(pending);
        pending.clear();
        if (!out->groups.empty() && g.revision != out->groups.back().revision + 1) {
          off = g.offset;
          return damaged(absl::StrCat("starts the group of revision ", g.revision, " after revision ",
                                      out->groups.back().revision, ": a gap"));
        }
        out->newest_revision = std::max(out->newest_revision, g.revision);
        out->groups.push_back(std::move(g));
        good_end = off + kLengthBytes + len;
        break;
      }
      default:
        return damaged(absl::StrCat("has the unknown event type ", static_cast<int>(e.type())));
    }
    off += kLengthBytes + len;
  }
  f.good_bytes = good_end;
  f.torn_bytes = data.size() - good_end;
  if (out->groups.empty() && f.torn_bytes > 0) {
    // Not one complete record: more likely a format 2 journal whose header is damaged than the first append of
    // a format 1 one cut short.
    off = 0;
    damaged("is not complete, nor any after it");
  }
}

}  // namespace

// ---- the state directory ---------------------------------------------------------------------------------------

absl::StatusOr<StateReport> ReadStateDir(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("state directory ", dir, " does not exist"));
    return ErrnoError("checking", dir);
  }
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  StateReport r;
  r.dir = dir;
  r.snapshot.path = dir + "/" + kSnapshotFileName;
  r.journal.path = dir + "/" + kJournalFileName;
  std::string snap_data, journal_data;
  for (auto [f, data] : {std::pair{&r.snapshot, &snap_data}, {&r.journal, &journal_data}}) {
    absl::Status s = ReadFile(f->path, data);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    f->exists = s.ok();
    f->size = data->size();
  }
  Reader reader(&r);
  SnapshotRead snap;
  if (r.snapshot.exists) reader.ReadSnapshot(snap_data, &snap);
  snap_data = std::string();
  JournalRead j;
  if (r.journal.exists) reader.ReadJournal(journal_data, &j);
  const uint64_t journal_size = journal_data.size();
  journal_data = std::string();
  if (!j.groups.empty()) {
    r.journal.groups = j.groups.size();
    r.journal.first_revision = j.groups.front().revision;
    r.journal.last_revision = j.groups.back().revision;
  }

  // Across the files.
  const std::string& sp = r.snapshot.path;
  const std::string& jp = r.journal.path;
  const uint64_t s_rev = snap.intact ? snap.state.revision : 0;
  if (snap.intact && r.snapshot.format == 2) {
    if (!r.journal.exists) {
      reader.Fail(jp, 0, absl::StrCat("missing: a format 2 ", kSnapshotFileName,
                                      " is always written with its journal, which holds the changes after "
                                      "revision ", s_rev));
    } else if (journal_size == 0) {
      reader.Fail(jp, 0, "empty: a format 2 journal always starts with its header");
    } else if (j.zeros) {
      reader.Fail(jp, 0, "nothing but zero bytes: its header and every change in it are gone");
    } else if (j.header_intact && j.history != snap.history) {
      reader.Fail(jp, 16, absl::StrCat("belongs to another state history (", Hex(j.history), ") than ",
                                       kSnapshotFileName, " (", Hex(snap.history), ")"));
    } else if (j.header_intact && j.base > s_rev) {
      reader.Fail(sp, 32, absl::StrCat("holds revision ", s_rev, ", but ", kJournalFileName,
                                       " follows a snapshot of revision ", j.base,
                                       ": this snapshot is older than its journal (a copy put back?)"));
    }
    if (r.journal.format == 1 && r.journal.torn_bytes > 0) {
      // The only format 1 journal beside a format 2 snapshot is the one an upgrade's first snapshot left behind
      // when it stopped before replacing it: whole, since it was read whole before.
      reader.Fail(jp, r.journal.good_bytes,
                  absl::StrCat("no \"", kJournalMagic, "\" magic, and as a format 1 journal it ends in an unfinished "
                               "record, which nftproxy never leaves beside a format 2 ", kSnapshotFileName));
    }
    if (r.journal.format == 1 && !j.groups.empty() && j.groups.back().revision > s_rev) {
      const Group& g = *std::find_if(j.groups.begin(), j.groups.end(), [&](const Group& g) { return g.revision > s_rev; });
      reader.Fail(jp, g.offset, absl::StrCat("a format 1 change (revision ", g.revision, ") after the format 2 ",
                                             kSnapshotFileName, " of revision ", s_rev, ", which nftproxy never writes"));
    }
  } else if (snap.intact && r.snapshot.format == 1) {
    if (r.journal.format == 2) {
      reader.Fail(jp, 0, absl::StrCat("a format 2 journal beside a format 1 ", kSnapshotFileName,
                                      ", which nftproxy never writes"));
    }
  } else if (!r.snapshot.exists) {
    if (j.header_intact && j.base > 0) {
      reader.Fail(sp, 0, absl::StrCat("missing, but ", kJournalFileName, " follows a snapshot of revision ", j.base,
                                      " (its header, byte 32): every resource saved up to revision ", j.base,
                                      " is gone"));
    } else if (j.header_intact && !j.groups.empty()) {
      // A directory's history starts with its journal, then its snapshot (revision 0): without one, the journal
      // cannot have grown.
      reader.Fail(sp, 0, absl::StrCat("missing, but ", kJournalFileName, " holds changes (revisions ",
                                      j.groups.front().revision, "-", j.groups.back().revision,
                                      "): a state directory gets its snapshot before its first change"));
    } else if (r.journal.format == 1 && !j.groups.empty() && j.groups.front().revision > 1) {
      reader.Fail(sp, 0, absl::StrCat("missing, but ", kJournalFileName, " (format 1) starts at revision ",
                                      j.groups.front().revision, ": the state before it is gone"));
    } else if (j.zeros) {
      reader.Fail(jp, 0, "nothing but zero bytes: its header and every change in it are gone");
    }
  }

  // The newest consistent point: the intact snapshot (or nothing), then the groups that follow from it.
  r.state = snap.intact ? std::move(snap.state) : State();
  if (snap.intact && r.snapshot.format == 2) r.history = snap.history;
  const bool same_history = !j.header_intact || !snap.intact || r.snapshot.format != 2 || j.history == snap.history;
  bool applied = false;
  size_t used = 0;
  for (Group& g : j.groups) {
    if (!applied && g.revision <= r.state.revision) {
      ++used;  // already in the snapshot (a crash between the snapshot's rename and the new journal)
      continue;
    }
    if (!same_history || g.previous != r.state.revision) {
      if (g.revision > s_rev) {
        reader.Fail(jp, g.offset,
                    !same_history ? absl::StrCat("the group of revision ", g.revision, " belongs to another history")
                                  : absl::StrCat("a gap: the group of revision ", g.revision, " follows revision ",
                                                 g.previous, ", but the state before it is at revision ",
                                                 r.state.revision));
      }
      break;
    }
    for (v1::WatchEvent& e : g.events) ApplyEvent(e, &r.state);
    r.state.revision = g.revision;
    applied = true;
    ++used;
  }
  // The history the state continues (Open keeps it): the snapshot's, or the journal's when there is no
  // snapshot yet.
  if (r.history.empty() && j.header_intact && !r.snapshot.exists) r.history = j.history;
  r.groups_after_problem = j.groups.size() - used;
  for (uint64_t rev : j.revisions_after_damage) {
    if (rev > r.state.revision) ++r.groups_after_problem;
  }
  r.newest_revision = std::max({r.state.revision, snap.header_intact ? snap.header_revision : 0,
                                j.header_intact ? j.base : 0, j.newest_revision});
  return r;
}

std::string NewStateHistory() {
  std::string h(kHistoryBytes, '\0');
  size_t got = 0;
  while (got < h.size()) {
    const ssize_t n = getrandom(h.data() + got, h.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (got < h.size()) {
    // No entropy source: the time and the pid still tell histories apart.
    const uint64_t t = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    Put64(h.data(), t);
    Put64(h.data() + 8, static_cast<uint64_t>(getpid()) ^ (t << 17));
  }
  return h;
}

std::string EncodeSnapshotFile(const State& state, absl::string_view history) {
  std::string out = SerializeSnapshotPayload(state, kSnapshotHeaderBytes);
  char* h = out.data();
  memcpy(h, kSnapshotMagic, kMagicBytes);
  Put32(h + 8, kStateFormat);
  Put32(h + 12, kSnapshotHeaderBytes);
  memcpy(h + 16, history.data(), kHistoryBytes);
  Put64(h + 32, state.revision);
  Put64(h + 40, out.size() - kSnapshotHeaderBytes);
  Put32(h + 48, Crc(h + kSnapshotHeaderBytes, out.size() - kSnapshotHeaderBytes));
  Put32(h + 52, static_cast<uint32_t>(state.objects.size()));
  Put32(h + 56, 0);
  Put32(h + 60, Crc(h, 60));
  return out;
}

std::string EncodeJournalHeader(absl::string_view history, uint64_t snapshot_revision) {
  std::string out(kJournalHeaderBytes, '\0');
  char* h = out.data();
  memcpy(h, kJournalMagic, kMagicBytes);
  Put32(h + 8, kStateFormat);
  Put32(h + 12, kJournalHeaderBytes);
  memcpy(h + 16, history.data(), kHistoryBytes);
  Put64(h + 32, snapshot_revision);
  Put32(h + 44, Crc(h, 44));
  return out;
}

absl::Status WriteFileSynced(const std::string& path, absl::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoError("writing", path);
  absl::Status s = WriteAll(fd, data, path);
  if (s.ok() && fsync(fd) != 0) s = ErrnoError("syncing", path);
  if (close(fd) != 0 && s.ok()) s = ErrnoError("writing", path);
  return s;
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening", dir);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoError("syncing", dir, err);
}

// ---- the store ---------------------------------------------------------------------------------------------------

namespace {

// The DataLoss of Open: what is wrong, where, and the choices.
absl::Status RefusalOf(const StateReport& r) {
  const StateProblem& p = *r.problem;
  std::string msg = absl::StrCat(p.path, ": ", p.what, " (at byte ", p.offset, "). ");
  if (p.unsupported) {
    absl::StrAppend(&msg, "Nothing was loaded and no file was changed. Run the nftproxy that wrote ", r.dir,
                    ", or move the directory away to start from an empty state.");
    return absl::DataLossError(msg);
  }
  absl::StrAppend(&msg, "The state in ", r.dir,
                  " does not check out: nothing was loaded and no file was changed. Choices: `nftproxy state check ",
                  r.dir, "` shows the files; `nftproxy state recover ", r.dir,
                  "` (or `serve --recover`) moves them aside into ", r.dir, "/damaged-<time>/ and starts from revision ",
                  r.state.revision, " (", r.state.objects.size(), " resources), ");
  if (r.lost_changes() == 1) {
    absl::StrAppend(&msg, "losing 1 change (revision ", r.newest_revision, ")");
  } else if (r.lost_changes() > 1) {
    absl::StrAppend(&msg, "losing ", r.lost_changes(), " changes (revisions ", r.state.revision + 1, " to ",
                    r.newest_revision, ")");
  } else {
    absl::StrAppend(&msg, "losing what the damaged part held (the files name no newer revision)");
  }
  absl::StrAppend(&msg, "; or put intact copies of the files back.");
  return absl::DataLossError(msg);
}

}  // namespace

FileStateStore::FileStateStore(const std::string& dir, const Options& options)
    : options_(options),
      dir_(dir),
      snapshot_path_(dir + "/" + kSnapshotFileName),
      journal_path_(dir + "/" + kJournalFileName) {}

FileStateStore::~FileStateStore() {
  if (journal_fd_ >= 0) close(journal_fd_);
}

absl::StatusOr<std::unique_ptr<FileStateStore>> FileStateStore::Open(const std::string& dir, State* loaded,
                                                                     const Options& options) {
  absl::StatusOr<StateReport> report = ReadStateDir(dir);
  if (!report.ok()) return report.status();
  StateReport& r = *report;
  if (r.problem) return RefusalOf(r);
  std::unique_ptr<FileStateStore> store(new FileStateStore(dir, options));
  store->history_ = r.history.empty() ? NewStateHistory() : r.history;
  store->snapshot_bytes_ = r.snapshot.size;
  store->revision_ = r.state.revision;
  const uint64_t snapshot_revision = r.snapshot.revision;
  if (r.snapshot.format == 2 && r.journal.format == 2 && r.journal.revision == snapshot_revision) {
    // The journal to append to.
    store->journal_fd_ = open(store->journal_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (store->journal_fd_ < 0) return ErrnoError("opening", store->journal_path_);
    store->journal_base_ = r.journal.revision;
    store->journal_bytes_ = r.journal.size - r.journal.torn_bytes;
    if (r.journal.torn_bytes > 0) {
      // Cut it off, or the next group would be appended after it and read as part of it.
      log::Warning("dropped an unfinished change at the end of the journal (the process stopped while writing it; "
                   "it was never acknowledged)",
                   {{"file", store->journal_path_},
                    {"offset", absl::StrCat(store->journal_bytes_)},
                    {"bytes", absl::StrCat(r.journal.torn_bytes)},
                    {"revision", absl::StrCat(r.state.revision)}});
      if (ftruncate(store->journal_fd_, static_cast<off_t>(store->journal_bytes_)) != 0 ||
          fdatasync(store->journal_fd_) != 0) {
        return ErrnoError("truncating", store->journal_path_);
      }
    }
  } else if (!r.snapshot.exists && (!r.journal.exists || r.journal.size == 0 || r.journal.format == 2)) {
    // Nothing saved yet (a format 2 journal without a snapshot checks out only while it holds no change: a start
    // that stopped between the two files). The history starts here: the journal first, then the snapshot, so
    // that from now on a missing file of either kind is damage.
    if (absl::Status s = store->StartJournal(0); !s.ok()) return s;
    const std::string tmp = store->snapshot_path_ + ".tmp";
    const std::string empty = EncodeSnapshotFile(State(), store->history_);
    if (absl::Status s = WriteFileSynced(tmp, empty); !s.ok()) return s;
    if (rename(tmp.c_str(), store->snapshot_path_.c_str()) != 0) return ErrnoError("renaming", tmp);
    if (absl::Status s = SyncDirectory(dir); !s.ok()) return s;
    store->snapshot_bytes_ = empty.size();
  } else {
    // A format 1 directory, or a journal older than the snapshot (a crash between the two renames of a
    // compaction): left as it is, and replaced by the first save, which is a snapshot.
    if (r.snapshot.format == 1 || r.journal.format == 1) {
      log::Info("the state files are in format 1; the first save writes them in format 2",
                {{"dir", dir}, {"revision", absl::StrCat(r.state.revision)}});
    }
    store->needs_snapshot_ = true;
  }
  *loaded = std::move(r.state);
  return store;
}

absl::Status FileStateStore::StartJournal(uint64_t snapshot_revision) {
  const std::string tmp = journal_path_ + ".tmp";
  const std::string header = EncodeJournalHeader(history_, snapshot_revision);
  if (absl::Status s = WriteFileSynced(tmp, header); !s.ok()) return s;
  if (rename(tmp.c_str(), journal_path_.c_str()) != 0) {
    absl::Status s = ErrnoError("renaming", tmp);
    unlink(tmp.c_str());
    return s;
  }
  if (absl::Status s = SyncDirectory(dir_); !s.ok()) return s;
  const int fd = open(journal_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening", journal_path_);
  if (journal_fd_ >= 0) close(journal_fd_);
  journal_fd_ = fd;
  journal_bytes_ = header.size();
  journal_base_ = snapshot_revision;
  return absl::OkStatus();
}

absl::Status FileStateStore::CheckRevision(uint64_t revision) const {
  if (revision >= revision_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("cannot save revision ", revision, " after revision ",
                                                    revision_, " in ", journal_path_));
}

absl::Status FileStateStore::Snapshot(const State& state) {
  return Publish(PrepareSnapshot(state));
}

FileStateStore::Pending FileStateStore::Prepare(const State& state, const std::vector<Key>& keys) const {
  Pending p;
  p.revision = state.revision;
  if (p.status = CheckRevision(state.revision); !p.status.ok()) return p;
  // A change to most of the state (a full sync) is cheaper written once as a snapshot than journaled and then
  // compacted. A group must be newer than what is saved (its revision is how load tells a gap).
  if (needs_snapshot_ || journal_fd_ < 0 || state.revision == revision_ ||
      (keys.size() >= 1024 && keys.size() * 2 >= state.objects.size())) {
    return PrepareSnapshot(state);
  }
  p.data.resize(kGroupHeaderBytes);
  v1::WatchEvent e;
  e.set_revision(state.revision);
  for (const Key& key : keys) {
    auto it = state.objects.find(key);
    const bool has = it != state.objects.end();
    e.set_type(has ? v1::WatchEvent::UPSERT : v1::WatchEvent::DELETE);
    *e.mutable_resource() = has ? it->second : ResourceOf(key);
    if (p.status = AppendEvent(e, &p.data); !p.status.ok()) return p;
  }
  if (p.data.size() - kGroupHeaderBytes > std::numeric_limits<uint32_t>::max()) {
    return PrepareSnapshot(state);
  }
  SealGroup(&p.data, state.revision, revision_, journal_base_, history_);
  // Compaction: past the threshold, the state is written as a snapshot instead of this group.
  if (journal_bytes_ + p.data.size() > std::max<uint64_t>(options_.min_compact_bytes, snapshot_bytes_)) {
    return PrepareSnapshot(state);
  }
  return p;
}

FileStateStore::Pending FileStateStore::PrepareSnapshot(const State& state) const {
  Pending p;
  p.snapshot = true;
  p.revision = state.revision;
  if (p.status = CheckRevision(state.revision); !p.status.ok()) return p;
  p.data = EncodeSnapshotFile(state, history_);
  p.status = WriteFileSynced(snapshot_path_ + ".tmp", p.data);
  return p;
}

absl::Status FileStateStore::Publish(Pending p) {
  if (!p.status.ok()) {
    Abandon(p);
    // The change is not on disk, so the journal alone would miss it: only a snapshot can bring the disk up to
    // date again. (A revision older than the saved one is the caller's mistake, not a lost change.)
    if (!absl::IsFailedPrecondition(p.status)) needs_snapshot_ = true;
    return p.status;
  }
  if (p.snapshot) {
    // On failure the journal is left as it was; it still describes the state together with the old snapshot (or
    // with the new one, if only the directory sync failed: load skips the groups the snapshot already holds).
    const std::string tmp = snapshot_path_ + ".tmp";
    if (rename(tmp.c_str(), snapshot_path_.c_str()) != 0) {
      absl::Status s = ErrnoError("renaming", tmp);
      Abandon(p);
      needs_snapshot_ = true;
      return s;
    }
    snapshot_bytes_ = p.data.size();
    revision_ = p.revision;
    // Until the new journal is in place, the old one (all of it at or below this revision) must not grow.
    needs_snapshot_ = true;
    if (absl::Status s = SyncDirectory(dir_); !s.ok()) return s;
    if (absl::Status s = StartJournal(p.revision); !s.ok()) return s;
    needs_snapshot_ = false;
    return absl::OkStatus();
  }
  // A group is prepared against the saved revision; anything else in between would make it a gap.
  if (p.data.size() < kGroupHeaderBytes || Get64(p.data.data() + 16) != revision_ ||
      Get64(p.data.data() + 24) != journal_base_) {
    needs_snapshot_ = true;
    return absl::InternalError(absl::StrCat("the journal group of revision ", p.revision,
                                            " was prepared against another saved revision"));
  }
  absl::Status s = WriteAll(journal_fd_, p.data, journal_path_);
  // Durable before the caller replies: an acknowledged change survives a power failure.
  if (s.ok() && fdatasync(journal_fd_) != 0) s = ErrnoError("syncing", journal_path_);
  if (!s.ok()) {
    // The journal now lacks this change, and may end in part of its group (a torn tail on load). Only a
    // snapshot can bring the disk up to date again; it also starts a new journal.
    needs_snapshot_ = true;
    return s;
  }
  ++journal_syncs_;
  journal_bytes_ += p.data.size();
  revision_ = p.revision;
  if (log::Enabled(log::Level::kDebug)) {
    log::Event(log::Level::kDebug, "journal synced",
               {{"revision", absl::StrCat(p.revision)}, {"bytes", absl::StrCat(p.data.size())},
                {"syncs", absl::StrCat(journal_syncs_)}});
  }
  return absl::OkStatus();
}

void FileStateStore::Abandon(const Pending& p) {
  if (p.snapshot) unlink((snapshot_path_ + ".tmp").c_str());
}

}  // namespace nftproxy::server
