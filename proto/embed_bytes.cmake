# cmake -DIN=file -DOUT=file.cc -P embed_bytes.cmake: writes IN's bytes as
# the array nftproxy::kDescriptorSet (see proto/include/descriptor_set.h).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "// Generated from ${IN}.\n#include <cstddef>\nnamespace nftproxy {\nextern const unsigned char kDescriptorSet[] = {\n${bytes}};\nextern const size_t kDescriptorSetSize = ${size};\n}  // namespace nftproxy\n")
