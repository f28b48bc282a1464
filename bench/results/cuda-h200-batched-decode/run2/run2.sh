#!/bin/bash
# device run 2: build HEAD + changes, test_cuda, bench the variants (one output file each kind)
set -u
T0=$(date +%s)
st() { echo "== [$(($(date +%s) - T0)) s] $*"; }
R=$PWD
D=/tmp/beast-deps
mkdir -p $D
for f in .deb/*.deb; do dpkg -x "$f" $D; done
export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$D
PKGCONF=()
command -v pkg-config >/dev/null || PKGCONF=(-DPKG_CONFIG_EXECUTABLE=$D/usr/bin/pkgconf)
export PATH=/usr/local/cuda/bin:$PATH
mkdir -p /tmp/new && tar -xf $R/build-batch-dev/new.tar -C /tmp/new
{ cmake -S /tmp/new -B /tmp/new/b -DCMAKE_BUILD_TYPE=Release -DBEAST_CUDA=ON -DBEAST_NATIVE=OFF "${PKGCONF[@]}" &&
    cmake --build /tmp/new/b -j16 --target beast beast-gen test_cuda; } >$OUT/build.txt 2>&1
echo "build rc $?"
grep -E "error|spill|warning" $OUT/build.txt | head -10
st "built"
B=/tmp/new/b
$B/beast-gen --preset llama-1b --type Q4_K_M --seed 7 -o /tmp/m.gguf >/dev/null 2>&1
st "model"
bench() { # label pp par env...
    local l=$1 p=$2 par=$3
    shift 3
    echo "### $l ($*)" >>$OUT/bench.txt
    env "$@" timeout 90 $B/beast bench -m /tmp/m.gguf -p $p -n 64 -r 2 --parallel $par ${PROF:-} >>$OUT/bench.txt 2>&1
    st "bench $l"
    sed -n '/### '"$l"' /,$p' $OUT/bench.txt | grep -E "pp512|tg64|profile" | sed 's/  */ /g;s/^| m.gguf | 766.74 MiB | 1235.8 M | cuda | 16 |//'
}
bench default 512 1,2,4,8,16,32 X=1
bench r4-1 0 3,4 BEAST_CUDA_MV_R4=1
bench r4-2 0 3,4 BEAST_CUDA_MV_R4=2
bench mv32 0 24,32 BEAST_CUDA_MV_MAX=32
bench mv8 0 16 BEAST_CUDA_MV_MAX=8
for sl in 2 4 8; do bench slice$sl 512 32 BEAST_CUDA_GEMM_SLICE_M=$sl; done
PROF=--profile bench prof 0 1,8,32 X=1
st "test_cuda"
(cd /tmp/new/tests && timeout 200 $B/test_cuda >$OUT/test_cuda.txt 2>&1; echo "test_cuda rc $?")
grep -E "FAIL" $OUT/test_cuda.txt | head
grep -E "^(matmul|fusions|tiny|determin)" $OUT/test_cuda.txt | head
tail -2 $OUT/test_cuda.txt
st "end"
