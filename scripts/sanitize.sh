#!/usr/bin/env bash
# The unit tests (tests/unit/*: common, manifest, dataplane and its libmnl shim, server, client) built with
# clang's AddressSanitizer + UndefinedBehaviorSanitizer and run once through
# ctest. Any sanitizer report fails the test that triggers it (UBSan is built
# with -fno-sanitize-recover, ASan aborts on its first error, LeakSanitizer
# reports fail the process at exit). tests/integration is not run: it needs
# root and network namespaces and takes minutes.
#
#   scripts/sanitize.sh            # build dir: build-asan
#   NFTPROXY_ASAN_BUILD=/tmp/b scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${NFTPROXY_ASAN_BUILD:-build-asan}
jobs=${NFTPROXY_JOBS:-2}

# Unit tests left out under the sanitizers, each with its reason (ctest -E
# regular expressions over test names). None so far.
excluded=()

CXX=clang++ CC=clang cmake -S . -B "$build" -G Ninja -DNFTPROXY_SANITIZE=ON
cmake --build "$build" -j"$jobs" --target common_tests manifest_tests dataplane_tests mnl_shim_tests server_tests serve_tests client_tests

symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
if [ -x "$symbolizer" ]; then export ASAN_SYMBOLIZER_PATH="$symbolizer"; fi
export ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Only the tests discovered from the unit-test binaries: every ctest
# test of tests/integration is named integration_*.
exclude='^integration_'
for e in "${excluded[@]}"; do exclude="$exclude|$e"; done
ctest --test-dir "$build" -E "$exclude" -j"$jobs" --output-on-failure --timeout 600
