#!/usr/bin/env bash
# peer-cuda.sh: build llama.cpp's CUDA tools (llama-bench, llama-server), the
# peer that beast's GPU numbers are measured against, from a source tarball
# carried to the GPU machine in an ignored folder. Never committed: the
# tarball is made here from the llama-cpp-python sdist (vendor/llama.cpp,
# without models/, docs/, tests/, examples/, .github/ ...):
#
#   bench/peer-cuda.sh --pack /path/llama_cpp_python-0.3.36.tar.gz
#       writes .peer/llama.cpp-src.tar.xz (about 8 MB)
#   bench/peer-cuda.sh [BUILD_DIR]
#       on the GPU machine: extracts it to BUILD_DIR/src (default /tmp/peer)
#       and builds llama-bench and llama-server for sm_90 with -j$(nproc);
#       prints the bin folder. Re-running with a finished build does nothing.
#
# env: PEER_ARCH (CMAKE_CUDA_ARCHITECTURES, default 90), PEER_JOBS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tarball=$root/.peer/llama.cpp-src.tar.xz

if [ "${1:-}" = "--pack" ]; then
    sdist=${2:?usage: $0 --pack SDIST.tar.gz}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    top=$(tar -tzf "$sdist" | head -1 | cut -d/ -f1)
    tar -xzf "$sdist" -C "$tmp" "$top/vendor/llama.cpp"
    mkdir -p "$root/.peer"
    ex=()
    for d in models docs .github media tests examples benches .devops gguf-py conversion; do
        ex+=(--exclude="llama.cpp/$d")
    done
    tar -cJf "$tarball" "${ex[@]}" --exclude=.git -C "$tmp/$top/vendor" llama.cpp
    ls -l "$tarball"
    exit 0
fi

dir=${1:-/tmp/peer}
bin=$dir/build/bin
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-server" ]; then
    echo "$bin"
    exit 0
fi
[ -f "$tarball" ] || { echo "no $tarball: run $0 --pack SDIST first (and carry .peer)" >&2; exit 1; }
export PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$dir"
[ -f "$dir/src/CMakeLists.txt" ] || { mkdir -p "$dir/src" && tar -xJf "$tarball" -C "$dir/src" --strip-components=1; }
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${PEER_ARCH:-90}" -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF >"$dir/cmake.log" 2>&1 ||
    { tail -30 "$dir/cmake.log" >&2; exit 1; }
cmake --build "$dir/build" --target llama-bench llama-server -j"${PEER_JOBS:-$(nproc)}" \
    >"$dir/build.log" 2>&1 || { grep -m5 -B2 -A8 "error" "$dir/build.log" >&2; tail -20 "$dir/build.log" >&2; exit 1; }
echo "$bin"
