#!/usr/bin/env bash
# build.sh: build the kernel microbenchmarks (bench/kernels/*.c) with a direct
# compiler line, independent of the CMake build (they need only src/cpu,
# src/quant and src/util). Not part of ctest.
#   bench/kernels/build.sh [out_dir]     (default: build-bench/)
#   CC=clang CFLAGS="-O2" bench/kernels/build.sh   to change the compiler/flags
# Default flags are those of the Release CMake build with BEAST_NATIVE=ON.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build-bench}
cc=${CC:-gcc}
cflags=${CFLAGS:--O3 -march=native}
mkdir -p "$out"
lib_src=("$root"/src/cpu/*.c "$root"/src/quant/*.c "$root"/src/util/*.c)
for b in "$root"/bench/kernels/*.c; do
  name=$(basename "$b" .c)
  $cc -std=c11 $cflags -g -Wall -Wextra -Werror -D_GNU_SOURCE -I"$root/src" -I"$root/include" \
    "$b" "${lib_src[@]}" -lm -lpthread -o "$out/$name"
  echo "built $out/$name"
done
