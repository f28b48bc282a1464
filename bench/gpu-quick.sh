#!/usr/bin/env bash
# gpu-quick.sh: a short development run on the GPU machine (no peer): the
# CUDA tests, beast bench on the generated 1B and 8B Q4_K_M shapes (pp512,
# tg128, batched decode), A/B switches given as environment variables, and
# an nsys kernel summary of decode when nsys exists. For the side-by-side
# comparison with llama.cpp use gpu-compare.sh.
#
# usage: bench/gpu-quick.sh [STEPS]  STEPS: comma list of
#        test,bench,ab,par,nsys (default all)
# env:   BEAST_BIN (default /tmp/beast-bin, from .peer/beast-bin.tar.xz),
#        AB="NAME=VALUE ..." switches for the ab step (each run alone)
# Output: $OUT/quick.txt (and test_cuda.txt, nsys-*.txt)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
STEPS=${1:-test,bench,ab,par,nsys}
has() { [[ ",$STEPS," == *",$1,"* ]]; }
BIN=${BEAST_BIN:-/tmp/beast-bin}
LOG=$OUT/quick.txt
T0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }
if [ ! -x "$BIN/beast" ] && [ -f "$ROOT/.peer/beast-bin.tar.xz" ]; then
    mkdir -p "$BIN" && tar -xJf "$ROOT/.peer/beast-bin.tar.xz" -C "$BIN"
fi
if ls "$ROOT"/.deb*/*.deb >/dev/null 2>&1; then
    D=/tmp/beast-deps
    mkdir -p $D
    for f in "$ROOT"/.deb*/*.deb; do dpkg -x "$f" $D; done
    export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
export PATH=/usr/local/cuda/bin:$PATH
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
echo "beast commit: $(cat "$BIN/COMMIT" 2>/dev/null)" >>"$LOG"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader >>"$LOG"

M=/tmp/beast-models
mkdir -p $M
gen() {
    [ -s "$2" ] && return 0
    stamp "beast-gen $*"
    "$BIN/beast-gen" --preset "$1" --type Q4_K_M -q "${@:3}" -o "$2.tmp" >>"$LOG" 2>&1 && mv "$2.tmp" "$2"
}
gen llama-1b $M/llama-1b-q4km.gguf &
gen llama-8b $M/llama-8b-q4km.gguf --untied &
if has test; then
    stamp "test_cuda"
    (cd "$ROOT/tests" && BEAST_MODELS_DIR=$ROOT/models "$BIN/test_cuda") >"$OUT/test_cuda.txt" 2>&1
    echo "test_cuda exit $?" | tee -a "$LOG"
    grep -E "FAIL|fail" "$OUT/test_cuda.txt" | head -20 | tee -a "$LOG"
fi
wait
B1=$M/llama-1b-q4km.gguf B8=$M/llama-8b-q4km.gguf
if has bench; then
    for m in $B1 $B8; do
        stamp "bench $(basename $m)"
        "$BIN/beast" bench -m $m -p 512 -n 128 -r 3 2>&1 | tee -a "$LOG"
    done
fi
if has ab; then
    for sw in ${AB:-}; do
        for m in $B1 $B8; do
            stamp "bench $(basename $m) with $sw"
            env "$sw" "$BIN/beast" bench -m $m -p 512 -n 128 -r 3 2>&1 | tee -a "$LOG"
        done
    done
fi
if has par; then
    for m in $B1 $B8; do
        stamp "bench --parallel $(basename $m)"
        "$BIN/beast" bench -m $m -p 0 -n 64 -r 3 --parallel 8,16,32,64 2>&1 | tee -a "$LOG"
    done
fi
if has nsys && command -v nsys >/dev/null; then
    for m in $B1 $B8; do
        n=$(basename $m .gguf)
        stamp "nsys $n"
        nsys profile -q -f true -o /tmp/nsys-$n --cuda-graph-trace=node \
            "$BIN/beast" bench -m $m -p 0 -n 64 -r 1 >/dev/null 2>&1
        nsys stats -q -r cuda_gpu_kern_sum -f csv /tmp/nsys-$n.nsys-rep >"$OUT/nsys-$n.csv" 2>&1
        head -25 "$OUT/nsys-$n.csv" | tee -a "$LOG"
    done
else
    echo "no nsys" | tee -a "$LOG"
fi
stamp done
