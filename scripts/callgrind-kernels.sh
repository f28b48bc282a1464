#!/usr/bin/env bash
# callgrind-kernels.sh: instruction counts of the CPU matmul kernels on a
# fixed micro-workload (bench/kernels/cg_workload.c) under callgrind.
# Counts are deterministic, so A/B comparisons of a kernel change need no
# timing (the machine is shared). Prints, per weight type, the instructions
# of mm_<type>_avx2 for a decode matvec (1 x 256 x 2048; per weight byte)
# and a batch (64 tokens x 64 x 2048; per multiply-add), and of the
# activation quantizer.
#   scripts/callgrind-kernels.sh [TYPE...]
# Env: CC, CFLAGS (as bench/kernels/build.sh), OUT (work dir, default
# build-bench/callgrind).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/build-bench/callgrind}
mkdir -p "$out"
"$root/bench/kernels/build.sh" "$out" >/dev/null
for mode in decode batch; do
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$mode" \
    "$out/cg_workload" $mode "$@" >"$out/$mode.txt" 2>"$out/$mode.log"
  callgrind_annotate --inclusive=yes --threshold=100 "$out/cg.$mode" >"$out/$mode.ann" 2>/dev/null
done
# inclusive Ir of a function in an annotate listing
ir() { awk -v f="$2" '{ g=$0; sub(/.*:/, "", g); sub(/ .*/, "", g);
  if (g == f) { gsub(",", "", $1); print $1; exit } }' "$1"; }
printf "%-5s | %12s %9s | %12s %9s\n" type "decode Ir" "Ir/byte" "batch Ir" "Ir/MAC"
while read -r mode name _ _ _ bytes; do
  [ "$mode" = decode ] || continue
  fn="mm_$(echo "$name" | tr 'A-Z' 'a-z')_avx2"
  d=$(ir "$out/decode.ann" "$fn"); b=$(ir "$out/batch.ann" "$fn")
  awk -v t="$name" -v d="${d:-0}" -v b="${b:-0}" -v by="$bytes" 'BEGIN {
    printf "%-5s | %12d %9.3f | %12d %9.4f\n", t, d, d / by, b, b / (64 * 64 * 2048) }'
done <"$out/decode.txt"
for mode in decode batch; do
  q=$(ir "$out/$mode.ann" q8_quantize_row)
  echo "q8_quantize_row ($mode, all types): ${q:-0} Ir"
done
