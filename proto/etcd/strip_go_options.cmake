# cmake -DIN=file.proto -DOUT=file.proto -P strip_go_options.cmake
#
# etcd publishes its v3 API as .proto files written for Go: they import
# gogoproto (Go code generation options) and google/api/annotations (the
# HTTP gateway). Neither changes a message on the wire. This writes the file
# without those imports and options, so that protoc generates plain C++ from
# Debian's copy of the definitions (package golang-etcd-server-dev).
file(READ ${IN} text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text "${text}")
# File options: option (gogoproto.x) = v;
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" text "${text}")
# Field options: [(gogoproto.x) = v, ...]
string(REGEX REPLACE "\\[\\(gogoproto\\.[^]]*\\]" "" text "${text}")
# Method options: option (google.api.http) = { ... { ... } ... };
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {([^{}]|{[^{}]*})*};" "" text "${text}")
if(text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "${IN}: Go-only options left after stripping; the definitions changed shape")
endif()
file(WRITE ${OUT} "${text}")
