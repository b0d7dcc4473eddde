// The served .proto files with their comments and imports: a serialized
// google.protobuf.FileDescriptorSet built with the binary (proto/CMakeLists.txt).
#pragma once

#include <cstddef>

namespace nftproxy {
extern const unsigned char kDescriptorSet[];
extern const size_t kDescriptorSetSize;
}  // namespace nftproxy
