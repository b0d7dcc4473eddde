#include "server/wire.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace nftproxy::server {
namespace {

// Protobuf wire types.
constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kStartGroup = 3;
constexpr int kEndGroup = 4;
constexpr int kFixed32 = 5;

bool ReadVarint(absl::string_view b, size_t* pos, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= b.size()) return false;
    const uint8_t c = static_cast<uint8_t>(b[(*pos)++]);
    v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if ((c & 0x80) == 0) {
      *out = v;
      return true;
    }
  }
  return false;
}

}  // namespace

absl::Status SplitField(absl::string_view b, int field, absl::string_view what,
                        std::vector<absl::string_view>* items, std::string* rest) {
  size_t pos = 0;
  while (pos < b.size()) {
    const size_t start = pos;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": not a valid protobuf message (", why, " at byte ", start, ")"));
    };
    uint64_t tag = 0;
    if (!ReadVarint(b, &pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return bad("bad field tag");
    const int number = static_cast<int>(tag >> 3);
    const int type = static_cast<int>(tag & 7);
    uint64_t n = 0;
    switch (type) {
      case kVarint:
        if (!ReadVarint(b, &pos, &n)) return bad("truncated varint");
        break;
      case kFixed64:
        if (b.size() - pos < 8) return bad("truncated fixed64");
        pos += 8;
        break;
      case kFixed32:
        if (b.size() - pos < 4) return bad("truncated fixed32");
        pos += 4;
        break;
      case kLengthDelimited:
        if (!ReadVarint(b, &pos, &n) || n > b.size() - pos) return bad("truncated length-delimited field");
        if (number == field) {
          items->push_back(b.substr(pos, n));
          pos += n;
          continue;
        }
        pos += n;
        break;
      case kStartGroup:
      case kEndGroup:
        // Groups are proto2-only and not in this API; unknown fields of
        // these types are refused rather than skipped wrongly.
        return bad("group field");
      default:
        return bad("unknown wire type");
    }
    if (number == field) return bad(absl::StrCat("field ", field, " is not length-delimited"));
    rest->append(b.data() + start, pos - start);
  }
  return absl::OkStatus();
}

}  // namespace nftproxy::server
