#!/usr/bin/env bash
# test.sh: build and run the whole test suite (CTest) on the real default
# models, then the same tests under AddressSanitizer + UBSan.
#   scripts/test.sh            release build + tests, then sanitizer build + tests
#   scripts/test.sh --fast     release build + tests only
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
"$root/scripts/deps.sh"
"$root/scripts/fetch-models.sh"

echo "== release build"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$jobs"
(cd "$root/build" && ctest --output-on-failure -j"$jobs")

[ "${1:-}" = "--fast" ] && exit 0

echo "== sanitizer build (ASan + UBSan)"
# CUDA code is not instrumented by the sanitizers: the CPU build is what they check
cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEAST_SANITIZE=ON -DBEAST_CUDA=OFF >/dev/null
cmake --build "$root/build-asan" -j"$jobs"
# The end-to-end golden tests run a reduced prompt set under the sanitizers.
(cd "$root/build-asan" && BEAST_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")
