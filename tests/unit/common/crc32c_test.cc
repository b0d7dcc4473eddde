// CRC-32C against published check values and a bit-at-a-time reference.
#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace nftproxy {
namespace {

// The definition, one bit at a time: what the table-driven code must equal.
uint32_t Reference(const std::string& data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32cTest, CheckValue) {
  // The "check" value of CRC-32C in every CRC catalogue.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, Rfc3720Vectors) {
  // iSCSI (RFC 3720, B.4): 32 bytes of zeros, of ones, ascending, descending.
  std::string zeros(32, '\0'), ones(32, '\xff'), up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down), 0x113FDB5Cu);
}

TEST(Crc32cTest, MatchesTheBitwiseDefinitionAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::string buf(300, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t start = 0; start < 9; ++start) {
    for (size_t len = 0; start + len <= buf.size(); len += (len < 40 ? 1 : 37)) {
      const std::string piece = buf.substr(start, len);
      ASSERT_EQ(Crc32c(piece), Reference(piece)) << "start " << start << " length " << len;
    }
  }
}

TEST(Crc32cTest, ExtendContinues) {
  const std::string a = "the snapshot header", b = " and its payload, in two calls";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b.data(), b.size()), Crc32c(a + b));
  EXPECT_EQ(Crc32cExtend(0, a.data(), a.size()), Crc32c(a));
}

TEST(Crc32cTest, EverySingleBitFlipChangesIt) {
  std::string data(64, 'x');
  const uint32_t good = Crc32c(data);
  for (size_t i = 0; i < data.size() * 8; ++i) {
    std::string flipped = data;
    flipped[i / 8] = static_cast<char>(flipped[i / 8] ^ (1 << (i % 8)));
    ASSERT_NE(Crc32c(flipped), good) << "bit " << i;
  }
}

}  // namespace
}  // namespace nftproxy
