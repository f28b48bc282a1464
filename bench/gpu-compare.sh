#!/usr/bin/env bash
# gpu-compare.sh: beast's CUDA backend against llama.cpp's CUDA build on the
# GPU machine, both engines on the same generated GGUF files, in one run:
#   - llama.cpp (bench/peer-cuda.sh) builds in the background, in its own
#     process session, so a call that runs out of time leaves it building
#     for the next call on the same (warm) machine;
#   - beast-gen writes Llama-3.2-1B-shape and Llama-3.1-8B-shape Q4_K_M
#     files (the 8B untied, as the real one);
#   - the device-to-device copy bandwidth (dev-cuda-matvec --ceilings);
#   - rounds of `llama-bench -ngl 99 -fa 0,1` and `beast bench`, alternating,
#     pp512 and tg128, 5 repetitions each;
#   - `beast run --verbose` load split, `beast bench --profile`, and the
#     cost of deterministic mode (dev-cuda-bench_decode --det).
# Every step is skipped when its result already exists in /tmp (a repeated
# call on a warm machine picks up where the last one stopped).
#
# usage: bench/gpu-compare.sh --pack BUILD_DIR   (here: .peer/beast-bin.tar.xz)
#        bench/gpu-compare.sh [STEPS]   STEPS: comma list of
#        test,matvec,ceil,bench,exact,load,profile,det (default: all but
#        test, matvec, exact, serial; exact adds tg128 with BEAST_CUDA_Q8=0,
#        serial tg128 with BEAST_GEN_AHEAD=0: every step waited for)
# env:   BEAST_BIN  folder with beast, beast-gen, test_cuda, dev-cuda-* built
#        elsewhere with -DBEAST_NATIVE=OFF (default /tmp/beast-bin, unpacked
#        from the carried .peer/beast-bin.tar.xz)
#        ROUNDS (default 2), DEADLINE seconds after which no new measurement
#        starts (default 540)
# Output ($OUT or ./gpu-out): env.txt log.txt beast.csv llama.csv table.md
# plus test_cuda.txt / matvec.txt when asked (8 files at most come back).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# binaries carried compressed (bench/gpu-compare.sh --pack BUILD_DIR makes it here)
if [ "${1:-}" = "--pack" ]; then
    b=${2:?usage: $0 --pack BUILD_DIR}
    git -C "$ROOT" rev-parse --short HEAD >"$b/COMMIT"
    git -C "$ROOT" status --short -- src/cuda dev/cuda src/cli/cmd_run.c tests/test_cuda.c |
        sed 's/^/uncommitted: /' >>"$b/COMMIT"
    tar -cJf "$ROOT/.peer/beast-bin.tar.xz" -C "$b" COMMIT beast beast-gen test_cuda \
        dev-cuda-matvec dev-cuda-bench_decode dev-cuda-attention
    ls -l "$ROOT/.peer/beast-bin.tar.xz"
    exit 0
fi
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
STEPS=${1:-ceil,bench,load,profile,det}
has() { [[ ",$STEPS," == *",$1,"* ]]; }
BIN=${BEAST_BIN:-/tmp/beast-bin}
ROUNDS=${ROUNDS:-2}
DEADLINE=${DEADLINE:-540}
T0=$(date +%s)
LOG=$OUT/log.txt
stamp() { echo "== [$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }
late() { [ $(($(date +%s) - T0)) -ge "$DEADLINE" ]; }
M=/tmp/beast-models
PEER=/tmp/peer
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
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PEER/build/bin:${LD_LIBRARY_PATH:-}

{
    date -u
    uname -a
    nvidia-smi
    nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,power.limit --format=csv
    nvcc --version | tail -2
    nproc
    grep -m1 'model name' /proc/cpuinfo
    echo "beast commit: $(cat "$BIN/COMMIT" 2>/dev/null || echo '?')"
    ldd "$BIN/beast" | grep -i "not found"
} >>"$OUT/env.txt" 2>&1
stamp "start: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"

# 1. llama.cpp, in the background, in its own session
if [ ! -x $PEER/build/bin/llama-bench ] && ! pgrep -f "peer-cuda.sh $PEER" >/dev/null; then
    stamp "peer build started"
    setsid nohup "$ROOT/bench/peer-cuda.sh" $PEER >/tmp/peer-build.out 2>&1 </dev/null &
fi

# 2. models
mkdir -p $M
gen() { # preset file extra...
    local p=$1 f=$2
    shift 2
    [ -s "$f" ] && return 0
    stamp "beast-gen $p $*"
    "$BIN/beast-gen" --preset "$p" --type Q4_K_M -q "$@" -o "$f.tmp" >>"$LOG" 2>&1 && mv "$f.tmp" "$f"
}
gen llama-1b $M/llama-1b-q4km.gguf
gen llama-8b $M/llama-8b-q4km.gguf --untied
MODELS=($M/llama-1b-q4km.gguf $M/llama-8b-q4km.gguf)
ls -l "${MODELS[@]}" >>"$LOG"

if has test; then
    stamp "tests/test_cuda"
    (cd "$ROOT/tests" && BEAST_MODELS_DIR=$ROOT/models "$BIN/test_cuda") >"$OUT/test_cuda.txt" 2>&1
    echo "test_cuda exit $?" | tee -a "$LOG"
    grep -E "FAIL|determin" "$OUT/test_cuda.txt" | head -20
fi

# GPU-timed workbench: fine while the peer compiles on the CPU
if has matvec; then
    stamp "dev-cuda-matvec (kernel versions)"
    "$BIN/dev-cuda-matvec" >"$OUT/matvec.txt" 2>&1
    grep -E "ceilings|FAIL" "$OUT/matvec.txt"
fi

# 3. wait for the peer (the measurements want an idle CPU)
while [ ! -x $PEER/build/bin/llama-server ] && pgrep -f "peer-cuda.sh $PEER" >/dev/null; do
    late && break
    sleep 5
done
[ -x $PEER/build/bin/llama-server ] && stamp "peer ready" || { stamp "peer not ready"; tail -5 /tmp/peer-build.out; }

if has ceil; then
    stamp "ceilings"
    "$BIN/dev-cuda-matvec" --ceilings | tee -a "$LOG"
fi

# 4. rounds: llama-bench (fa 0 and 1), beast bench, alternating
LB=$PEER/build/bin/llama-bench
if has bench; then
    for k in $(seq 1 "$ROUNDS"); do
        for m in "${MODELS[@]}"; do
            late && break 2
            name=$(basename "$m" .gguf)
            if [ -x $LB ]; then
                stamp "llama-bench $name round $k"
                $LB -m "$m" -ngl 99 -fa 0,1 -p 512 -n 128 -r 5 -o csv 2>>"$LOG" |
                    sed "s/^/$k,/" >>"$OUT/llama.csv"
            fi
            stamp "beast bench $name round $k"
            "$BIN/beast" bench -m "$m" -p 512 -n 128 -r 5 -o csv 2>>"$LOG" |
                sed "s/^/$k,/" >>"$OUT/beast.csv"
            if has serial; then # tg waiting for every step (no running ahead)
                stamp "beast bench (BEAST_GEN_AHEAD=0) $name round $k"
                BEAST_GEN_AHEAD=0 "$BIN/beast" bench -m "$m" -p 0 -n 128 -r 5 -o csv 2>>"$LOG" |
                    sed "s/^/$k,/" >>"$OUT/beast-serial.csv"
            fi
            if has exact; then # float activations in every mat-vec (BEAST_CUDA_Q8=0)
                stamp "beast bench (BEAST_CUDA_Q8=0) $name round $k"
                BEAST_CUDA_Q8=0 "$BIN/beast" bench -m "$m" -p 0 -n 128 -r 5 -o csv 2>>"$LOG" |
                    sed "s/^/$k,/" >>"$OUT/beast-exact.csv"
            fi
        done
    done
fi

# 5. load to ready (page cache warm: the files were just read), profile
if has load; then
    for m in "${MODELS[@]}"; do
        late && break
        stamp "load $(basename "$m")"
        for k in 1 2; do
            "$BIN/beast" run -m "$m" -p "The capital of France is" -n 16 --greedy --verbose 2>&1 \
                >/dev/null | grep -E "^load|load split|backend" | tee -a "$LOG"
        done
    done
fi
if has profile; then
    for m in "${MODELS[@]}"; do
        late && break
        stamp "profile $(basename "$m")"
        BEAST_CUDA_GRAPHS=0 BEAST_CUDA_PROFILE=1 "$BIN/beast" bench -m "$m" -p 512 -n 128 -r 1 \
            --profile >>"$LOG" 2>&1
    done
fi
if has det; then # the cost of deterministic mode (batch-independent results)
    for m in "${MODELS[@]}"; do
        for d in "" --det; do
            late && break 2
            stamp "bench_decode $(basename "$m") $d"
            "$BIN/dev-cuda-bench_decode" "$m" --prompt 512 --gen 128 $d 2>&1 | tee -a "$LOG"
            "$BIN/dev-cuda-bench_decode" "$m" --prompt 64 --gen 64 --seqs 8 $d 2>&1 | tee -a "$LOG"
        done
    done
fi

# 6. table: mean over rounds of each engine's t/s
{
    echo "| model | test | llama.cpp fa=0 t/s | llama.cpp fa=1 t/s | beast t/s | beast / best llama.cpp |"
    echo "|---|---|---|---|---|---|"
    for m in "${MODELS[@]}"; do
        name=$(basename "$m" .gguf)
        for t in pp512 tg128; do
            awk -F, -v name="$name" -v t="$t" -v lf="$OUT/llama.csv" '
                function num(s) { gsub(/"/, "", s); return s + 0 }
                BEGIN {
                    while ((getline line < lf) > 0) {
                        n = split(line, f, ",")
                        if (f[2] ~ /build_commit/) { for (i = 1; i <= n; i++) { g = f[i]; gsub(/"/, "", g); h[g] = i } continue }
                        if (!("avg_ts" in h) || index(line, name) == 0) continue
                        np = num(f[h["n_prompt"]]); ng = num(f[h["n_gen"]]); fa = num(f[h["flash_attn"]])
                        if ((t == "pp512" && np == 512 && ng == 0) || (t == "tg128" && ng == 128 && np == 0)) {
                            s[fa] += num(f[h["avg_ts"]]); c[fa]++
                        }
                    }
                }
                $2 == name ".gguf" && (t == "pp512" ? $7 == 512 : $8 == 128) { bs += $10; bc++ }
                END {
                    a0 = c[0] ? s[0] / c[0] : 0; a1 = c[1] ? s[1] / c[1] : 0; b = bc ? bs / bc : 0
                    best = a0 > a1 ? a0 : a1
                    r = best > 0 ? sprintf("%.2fx", b / best) : "-"
                    printf "| %s | %s | %.1f | %.1f | %.1f | %s |\n", name, t, a0, a1, b, r
                }' "$OUT/beast.csv"
        done
    done
} >"$OUT/table.md"
cat "$OUT/table.md"
stamp "done"
