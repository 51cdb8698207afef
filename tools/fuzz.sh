#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) in build-fuzz and runs each from its
# seed corpus in tests/fuzz/corpus/<target>/ for --seconds (default 300) each. CI runs it
# with a short bound through tools/test.sh; run it by hand for longer:
#   tools/fuzz.sh --seconds 3600            # an hour per target
#   tools/fuzz.sh --only decoder_fuzz --seconds 600
# A crash leaves its input in build-fuzz/findings/<target>/; make it a regression test (and
# add it to the corpus) before fixing it. New inputs that add coverage go to
# build-fuzz/corpus/<target>/ (not committed); copy the small interesting ones into
# tests/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=300
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: tools/fuzz.sh [--seconds N] [--only TARGET]" >&2; exit 2 ;;
  esac
done

export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSTRATA_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_all

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
status=0
for seeds in tests/fuzz/corpus/*/; do
  target=$(basename "$seeds")
  [ -n "$only" ] && [ "$target" != "$only" ] && continue
  work=build-fuzz/corpus/$target findings=build-fuzz/findings/$target
  mkdir -p "$work" "$findings"
  echo "== fuzz $target for ${seconds}s"
  if ! build-fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" "$work" "$seeds" \
       > "build-fuzz/$target.log" 2>&1; then
    echo "fuzz $target: FAILED (input in $findings/):"
    tail -n 40 "build-fuzz/$target.log"
    status=1
  else
    grep -E "^stat::number_of_executed_units|^Done" "build-fuzz/$target.log" | tr '\n' ' '
    echo
  fi
done
exit $status
