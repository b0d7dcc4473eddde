#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, coverage
# instrumentation of every library they test) and runs each for SECONDS
# (default 60) over a copy of its seed corpus in tests/fuzz/corpus/<target>/
# (the repository's corpus is only read). Exits non-zero on any crash, leak,
# sanitizer report or broken invariant (the targets abort on those); the
# input that caused it is kept in the run directory and named in the output.
#
#   scripts/fuzz.sh [SECONDS]
#   NFTPROXY_FUZZ_BUILD=/tmp/b NFTPROXY_FUZZ_WORK=/tmp/w scripts/fuzz.sh 10
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${NFTPROXY_FUZZ_BUILD:-build-fuzz}
work=${NFTPROXY_FUZZ_WORK:-$build/fuzz-runs}
jobs=${NFTPROXY_JOBS:-2}
targets=(manifest_fuzz engine_fuzz compiler_fuzz http_fuzz dns_fuzz)

CXX=clang++ CC=clang cmake -S . -B "$build" -G Ninja -DNFTPROXY_FUZZ=ON
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
if [ -x "$symbolizer" ]; then export ASAN_SYMBOLIZER_PATH="$symbolizer"; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=()
for t in "${targets[@]}"; do
  run="$work/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus"
  cp -r "tests/fuzz/corpus/$t/." "$run/corpus/"
  # Inputs larger than max_len are cut; the seeds are far smaller.
  case $t in
    manifest_fuzz) max_len=8192 ;;
    engine_fuzz) max_len=8192 ;;
    compiler_fuzz) max_len=2048 ;;
    http_fuzz) max_len=1024 ;;
    dns_fuzz) max_len=2048 ;;
  esac
  echo "== $t: ${seconds}s over $(ls "$run/corpus" | wc -l) seeds"
  if ! "$build/tests/fuzz/$t" "$run/corpus" -max_total_time="$seconds" -max_len="$max_len" \
      -detect_leaks=1 -error_exitcode=77 -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$run/" >"$run/log" 2>&1; then
    failed+=("$t")
    echo "!! $t failed; its output ($run/log) ends with:"
    tail -n 60 "$run/log"
    ls "$run"/crash-* "$run"/leak-* "$run"/timeout-* "$run"/oom-* 2>/dev/null || true
  fi
  # The last status line: executions, coverage, corpus.
  grep -E '^#[0-9]+' "$run/log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$run/log" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}"
  exit 1
fi
