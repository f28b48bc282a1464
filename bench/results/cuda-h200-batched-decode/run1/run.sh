#!/bin/bash
# device run for the batched-decode work: build HEAD (old) and HEAD + changes (new), bench both
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
VERS=${VERS:-old new}
build() {
    mkdir -p /tmp/$1 && tar -xf $R/build-batch-dev/$1.tar -C /tmp/$1
    cmake -S /tmp/$1 -B /tmp/$1/b -DCMAKE_BUILD_TYPE=Release -DBEAST_CUDA=ON -DBEAST_NATIVE=OFF "${PKGCONF[@]}" &&
        cmake --build /tmp/$1/b -j16 --target beast beast-gen test_cuda
}
for v in $VERS; do (build $v >$OUT/build-$v.txt 2>&1; echo "build $v rc $?") & done
wait
st "built"
for v in $VERS; do tail -3 $OUT/build-$v.txt; done
B=/tmp/new/b
[ -x $B/beast-gen ] || B=/tmp/old/b
$B/beast-gen --preset llama-1b --type Q4_K_M --seed 7 -q -o /tmp/m.gguf >/dev/null 2>&1 || $B/beast-gen --preset llama-1b --type Q4_K_M --seed 7 -o /tmp/m.gguf >/dev/null
st "model"
P=${PAR:-1,2,4,8,16,32}
bench() { # label bin env...
    local l=$1 b=$2
    shift 2
    st "bench $l"
    env "$@" timeout 90 $b/beast bench -m /tmp/m.gguf -p 0 -n 64 -r 2 --parallel $P ${PROF:-} >$OUT/bench-$l.txt 2>&1
    grep -E "tg64|profile" $OUT/bench-$l.txt | sed 's/  */ /g'
}
if [ -x /tmp/new/b/test_cuda ]; then
    st "test_cuda"
    (cd /tmp/new/tests && timeout 150 /tmp/new/b/test_cuda >$OUT/test_cuda.txt 2>&1; echo "test_cuda rc $?")
    grep -E "FAIL" $OUT/test_cuda.txt | head
    tail -2 $OUT/test_cuda.txt
fi
[ -x /tmp/old/b/beast ] && bench old /tmp/old/b X=1 && PROF=--profile bench old-prof /tmp/old/b X=1
if [ -x /tmp/new/b/beast ]; then
    for mv in ${MVS:-1 2 4 8}; do bench new-mv$mv /tmp/new/b BEAST_CUDA_MV_MAX=$mv; done
    for r in ${RS:-2 4}; do bench new-mv8-r$r /tmp/new/b BEAST_CUDA_MV_MAX=8 BEAST_CUDA_MV_R=$r; done
    PROF=--profile bench new-prof /tmp/new/b X=1
fi
st "end"
