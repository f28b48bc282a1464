#!/usr/bin/env bash
# gpu-dev.sh: a kernel development run on the GPU machine, everything built
# there from the working tree (16 cores: about 2 minutes), then the steps
# asked for, in order. For the side-by-side comparison with llama.cpp use
# gpu-compare.sh; for a run on carried binaries, gpu-quick.sh.
#
# usage: bench/gpu-dev.sh STEP...   a STEP is one of
#   matvec[=FILTER]   dev-cuda-matvec (rows whose "type/shape/version"
#                     contains FILTER; the ceilings always)
#   ncu=FILTER        Nsight Compute (speed of light, occupancy, warp states,
#                     memory) of one timed launch of those rows
#   test              tests/test_cuda
#   kernels=MODEL     each kernel's time in one decode step of MODEL
#                     (llama-1b-q4km or llama-8b-q4km), Nsight Compute with
#                     graphs off (launches serialised: the sum against the
#                     step time shows what launching and waiting cost)
#   ncudec=MODEL:RE   Nsight Compute sections of one launch (the 41st) of
#                     the kernels matching RE in a decode run of MODEL
#   decode[=ENV,...]  dev-cuda-bench_decode on generated Llama-3.2-1B and
#                     Llama-3.1-8B shapes (Q4_K_M), 1 and 8 sequences, with
#                     the comma-separated NAME=VALUE settings given
# env:   BEAST_COMMIT  the commit the sent tree is at, for the log
# Output: $OUT/dev.txt (and build.txt when the build fails).
# Libraries the device lacks come as .deb files in .deb/ and .deb-server/
# (as gpu-check.sh); the binaries stay in /tmp/beast-build, where a following
# call on the still-warm machine (BEAST_BIN=/tmp/beast-build
# bench/gpu-compare.sh) finds them.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/dev.txt
T0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }

PKGCONF=()
if ls "$ROOT"/.deb/*.deb >/dev/null 2>&1; then
    D=/tmp/beast-deps
    mkdir -p $D
    for f in "$ROOT"/.deb*/*.deb; do dpkg -x "$f" $D; done
    export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$D
    command -v pkg-config >/dev/null || PKGCONF=(-DPKG_CONFIG_EXECUTABLE=$D/usr/bin/pkgconf)
fi
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total,driver_version --format=csv,noheader >>"$LOG"
# the tree sent to this machine may carry a stale .git: the caller names the commit
echo "beast: ${BEAST_COMMIT:-commit not given (BEAST_COMMIT)}, working tree as sent" >>"$LOG"

B=/tmp/beast-build
stamp "build"
if ! { cmake -S "$ROOT" -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DBEAST_CUDA=ON "${PKGCONF[@]}" &&
    cmake --build $B --target beast test_cuda beast-gen dev-cuda-matvec \
        dev-cuda-bench_decode dev-cuda-attention; } \
    >"$OUT/build.txt" 2>&1; then
    tail -30 "$OUT/build.txt"
    exit 1
fi
rm -f "$OUT/build.txt"

M=/tmp/beast-models
mkdir -p $M
gen() { [ -s "$2" ] || "$B/beast-gen" --preset "$1" --type Q4_K_M -q "${@:3}" -o "$2" >/dev/null 2>&1; }
for s in "$@"; do
    case $s in decode* | kernels* | ncudec*) (gen llama-1b $M/llama-1b-q4km.gguf & gen llama-8b $M/llama-8b-q4km.gguf --untied & wait) & break ;; esac
done

rc=0
for s in "$@"; do
    case $s in
    matvec*)
        f=${s#matvec}
        f=${f#=}
        stamp "matvec ${f:-all}"
        if [ -n "$f" ]; then "$B/dev-cuda-matvec" --only "$f"; else "$B/dev-cuda-matvec"; fi >>"$LOG" 2>&1 || rc=1
        ;;
    ncu=*)
        f=${s#ncu=}
        stamp "ncu $f"
        ncu --launch-skip 2 --launch-count 1 -k regex:'mv|mvq|mvs' \
            --section SpeedOfLight --section Occupancy --section WarpStateStats \
            --section MemoryWorkloadAnalysis --section LaunchStats \
            "$B/dev-cuda-matvec" --only "$f" 2>&1 | grep -v '^==PROF==' | cut -c1-150 >>"$LOG"
        ;;
    test)
        stamp "test_cuda"
        (cd "$ROOT/tests" && BEAST_MODELS_DIR=$ROOT/models "$B/test_cuda") >"$OUT/test_cuda.txt" 2>&1
        echo "test_cuda exit $?" | tee -a "$LOG"
        grep -E "FAIL|fail" "$OUT/test_cuda.txt" | head -20 | tee -a "$LOG"
        ;;
    kernels=*)
        wait
        m=${s#kernels=}
        stamp "kernel durations, decode of $m (graphs off, ncu serialises launches)"
        BEAST_CUDA_GRAPHS=0 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
            "$B/dev-cuda-bench_decode" $M/$m.gguf --prompt 8 --gen 3 >/tmp/kernels-$m.csv 2>/dev/null
        python3 - /tmp/kernels-$m.csv <<'PY' >>"$LOG"
import csv, sys, collections
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))
        if r.get("Metric Name") == "gpu__time_duration.sum"]
names = [r["Kernel Name"].split("(")[0][:60] for r in rows]
us = [float(r["Metric Value"].replace(",", "")) / (1e3 if r["Metric Unit"] == "ns" else 1) for r in rows]
# a decode step is the period of the launch sequence's tail
n = len(names)
for L in range(20, n // 3):
    if names[n - L:] == names[n - 2 * L:n - L]:
        break
tot = collections.OrderedDict()
for nm, t in zip(names[n - L:], us[n - L:]):
    c, s = tot.get(nm, (0, 0.0))
    tot[nm] = (c + 1, s + t)
print("launches per decode step:", L, " sum of kernel times: %.1f us" % sum(us[n - L:]))
for nm, (c, s) in sorted(tot.items(), key=lambda kv: -kv[1][1]):
    print("%8.1f us %5d x %7.2f us  %s" % (s, c, s / c, nm))
PY
        ;;
    ncudec=*)
        wait
        a=${s#ncudec=}
        m=${a%%:*}
        k=${a#*:}
        stamp "ncu of $k in a decode step of $m"
        BEAST_CUDA_GRAPHS=0 ncu --clock-control none -k regex:"$k" --launch-skip 40 --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section WarpStateStats \
            --section MemoryWorkloadAnalysis --section LaunchStats --section SchedulerStats \
            "$B/dev-cuda-bench_decode" $M/$m.gguf --prompt 8 --gen 3 2>&1 |
            grep -v -E '^==PROF==|^ *-+ *-+' | cut -c1-150 >>"$LOG"
        ;;
    decode*)
        wait
        envs=${s#decode}
        envs=${envs#=}
        for m in llama-1b-q4km llama-8b-q4km; do
            for q in 1 8; do
                stamp "decode $m seqs=$q ${envs}"
                env ${envs//,/ } "$B/dev-cuda-bench_decode" $M/$m.gguf --prompt 256 --gen 128 \
                    --seqs $q >>"$LOG" 2>&1 || rc=1
            done
        done
        ;;
    *) echo "unknown step $s" | tee -a "$LOG" ;;
    esac
done
stamp "done, rc $rc"
exit $rc
