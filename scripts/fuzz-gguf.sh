#!/usr/bin/env bash
# fuzz-gguf.sh [seconds]: build the GGUF libFuzzer target (clang, ASan+UBSan)
# in build-fuzz and run it over fuzz/corpus/gguf for the given time (default
# 60). New inputs go to build-fuzz/corpus-gguf (the committed corpus is only
# read); crashes go to build-fuzz/crashes-gguf/. Extra arguments after the
# seconds are passed to libFuzzer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
shift || true
bd="$root/build-fuzz"
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
mkdir -p "$bd"

if ! { CC=clang cmake -S "$root" -B "$bd" -DBEAST_FUZZ=ON -DBEAST_NATIVE=OFF -DBEAST_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$san" >"$bd/cmake.log" 2>&1 &&
       cmake --build "$bd" --target fuzz_gguf -j2 >>"$bd/cmake.log" 2>&1; }; then
    # The library may not build while other modules are in progress: build
    # just what the target needs.
    echo "fuzz-gguf: cmake build failed (see $bd/cmake.log); building directly" >&2
    clang -std=c11 -O1 -D_GNU_SOURCE -Wall -Wextra -I"$root/src" -I"$root/include" \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g \
        "$root"/fuzz/fuzz_gguf.c "$root"/src/gguf/*.c "$root"/src/util/util.c \
        "$root"/src/quant/*.c -lm -o "$bd/fuzz_gguf"
fi

mkdir -p "$bd/corpus-gguf" "$bd/crashes-gguf"
cd "$bd"
rm -f fuzz-0.log
# -jobs=1 runs the fuzzer in a child whose output goes to fuzz-0.log.
rc=0
nice -n 10 ./fuzz_gguf -max_total_time="$secs" -jobs=1 -workers=1 -max_len=65536 \
    -artifact_prefix="$bd/crashes-gguf/" -print_final_stats=1 \
    "$@" "$bd/corpus-gguf" "$root/fuzz/corpus/gguf" || rc=$?
tail -n 25 fuzz-0.log 2>/dev/null || true
if ls "$bd"/crashes-gguf/* >/dev/null 2>&1; then
    echo "fuzz-gguf: findings in $bd/crashes-gguf/" >&2
    rc=1
fi
# To refresh the committed corpus (keep it small):
#   mkdir $bd/min && ./fuzz_gguf -merge=1 $bd/min $bd/corpus-gguf $root/fuzz/corpus/gguf
exit "$rc"
