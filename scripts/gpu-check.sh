#!/usr/bin/env bash
# gpu-check.sh: everything the CUDA backend needs checked and timed on a GPU
# machine, in one go: environment, build (unless a prebuilt build directory
# is given), tests/test_cuda (every op vs. the CPU backend, whole generated
# models, graph replay), the dev/cuda workbenches (mat-vec versions and
# bandwidth vs. cudaMemcpy), and decode speed of generated llama models.
# Results go to $OUT (or ./gpu-out): env.txt build.txt test_cuda.txt
# matvec.txt attention.txt bench.txt.
#
# usage: scripts/gpu-check.sh [STEPS]    STEPS: comma list of
#        test,matvec,attention,bench,bench8b (default test,matvec,attention,bench)
# env:   BEAST_BUILD=dir  use executables already built there (a build made
#        elsewhere with -DBEAST_NATIVE=OFF); otherwise configure and build
#        in /tmp/beast-build.
# Libraries the device lacks (libpcre2, libutf8proc, libedit) come as .deb
# files in .deb/ (apt-get download ...), unpacked into /tmp/beast-deps.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
STEPS=${1:-test,matvec,attention,bench}
has() { [[ ",$STEPS," == *",$1,"* ]]; }
T0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - T0)) s] $*"; }

PKGCONF=()
if ls "$ROOT"/.deb/*.deb >/dev/null 2>&1; then
    D=/tmp/beast-deps
    mkdir -p $D
    for f in "$ROOT"/.deb/*.deb; do dpkg -x "$f" $D; done
    export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$D
    command -v pkg-config >/dev/null || PKGCONF=(-DPKG_CONFIG_EXECUTABLE=$D/usr/bin/pkgconf)
fi
export PATH=/usr/local/cuda/bin:$PATH

{
    date -u
    uname -a
    nvidia-smi
    nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,power.limit --format=csv
    nvcc --version
    cmake --version | head -1
    gcc --version | head -1
    nproc
} >"$OUT/env.txt" 2>&1
stamp "environment: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"

BUILD=${BEAST_BUILD:-}
TARGETS=(test_cuda beast-gen dev-cuda-matvec dev-cuda-attention dev-cuda-bench_decode)
need_build=0
if [ -z "$BUILD" ]; then need_build=1; else
    for t in "${TARGETS[@]}"; do [ -x "$BUILD/$t" ] || need_build=1; done
    [ $need_build = 0 ] && ldd "$BUILD/test_cuda" | grep -q "not found" && need_build=1
    [ $need_build = 1 ] && echo "prebuilt $BUILD unusable; building here"
fi
if [ $need_build = 1 ]; then
    BUILD=/tmp/beast-build
    stamp "building in $BUILD"
    if ! { cmake -S "$ROOT" -B $BUILD -DCMAKE_BUILD_TYPE=Release -DBEAST_CUDA=ON "${PKGCONF[@]}" &&
        cmake --build $BUILD -j"$(nproc)" --target "${TARGETS[@]}"; } >"$OUT/build.txt" 2>&1; then
        tail -40 "$OUT/build.txt"
        exit 1
    fi
fi
stamp "build ready ($BUILD)"

rc=0
if has test; then
    stamp "tests/test_cuda"
    (cd "$ROOT/tests" && BEAST_MODELS_DIR=$ROOT/models "$BUILD/test_cuda") >"$OUT/test_cuda.txt" 2>&1
    trc=$?
    grep -E "^(seed|FAIL|ok|matmul|embed|small|attention|tiny|skipped)" "$OUT/test_cuda.txt" | head -60
    echo "test_cuda exit $trc"
    [ $trc = 0 ] || rc=1
fi
if has matvec; then
    stamp "dev/cuda/matvec"
    "$BUILD/dev-cuda-matvec" >"$OUT/matvec.txt" 2>&1 || rc=1
    grep -E "ceilings|FAIL|matvec:" "$OUT/matvec.txt"
fi
if has attention; then
    stamp "dev/cuda/attention"
    "$BUILD/dev-cuda-attention" >"$OUT/attention.txt" 2>&1 || rc=1
    tail -20 "$OUT/attention.txt"
fi
if has bench || has bench8b; then
    : >"$OUT/bench.txt"
    presets=()
    has bench && presets+=(llama-1b)
    has bench8b && presets+=(llama-8b)
    for p in "${presets[@]}"; do
        f=/tmp/$p-q4km.gguf
        stamp "beast-gen $p Q4_K_M"
        "$BUILD/beast-gen" --preset $p --type Q4_K_M -q -o $f >>"$OUT/bench.txt" 2>&1 || { rc=1; continue; }
        # graphs on/off, fusions on/off, a per-kind profile (eager), 8 sequences
        for cfg in "1 1 0 1" "0 1 0 1" "1 0 0 1" "0 1 1 1" "1 1 0 8" "0 1 0 8"; do
            set -- $cfg
            echo "--- $p Q4_K_M seqs=$4 graphs=$1 fuse=$2 profile=$3" >>"$OUT/bench.txt"
            BEAST_CUDA_GRAPHS=$1 BEAST_CUDA_FUSE=$2 BEAST_CUDA_PROFILE=$3 \
                "$BUILD/dev-cuda-bench_decode" $f --prompt 256 --gen 128 --seqs $4 \
                >>"$OUT/bench.txt" 2>&1 || rc=1
        done
        rm -f $f
    done
    cat "$OUT/bench.txt"
fi
stamp "done, rc $rc"
exit $rc
