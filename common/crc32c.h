// CRC-32C (Castagnoli, the checksum of iSCSI, ext4 metadata and SCTP): the
// checksum of nftproxy's state files. Table-driven (eight bytes per step), in
// software, so it gives the same answer on every machine.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace nftproxy {

// The CRC-32C of `data`. Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(absl::string_view data);

// Continues a checksum: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b), and
// Crc32cExtend(0, a) == Crc32c(a).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

}  // namespace nftproxy
