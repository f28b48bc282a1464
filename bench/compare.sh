#!/usr/bin/env bash
# compare.sh: beast vs llama.cpp on the same GGUF files, same threads, in one
# run, interleaved A B A B, and a markdown table with the ratio.
#
#   bench/compare.sh [-t THREADS] [-p N] [-n N] [-r REPS] [-k ROUNDS] MODEL...
#
# llama.cpp is built from the llama-cpp-python sdist on PyPI (its full source
# is vendored there) with CMake in a cache folder outside the repository,
# $BEAST_PEER_DIR (default ~/.cache/beast-peer), once; set LLAMA_BENCH to use
# an existing llama-bench instead. Nothing of llama.cpp enters the repo.
# Output: the table on stdout; raw outputs under bench/results/compare-DATE/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=$(nproc) p=512 n=128 reps=5 rounds=2
while getopts "t:p:n:r:k:" o; do
  case $o in
    t) threads=$OPTARG ;; p) p=$OPTARG ;; n) n=$OPTARG ;; r) reps=$OPTARG ;; k) rounds=$OPTARG ;;
    *) echo "usage: $0 [-t THREADS] [-p N] [-n N] [-r REPS] [-k ROUNDS] MODEL..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-t THREADS] [-p N] [-n N] [-r REPS] [-k ROUNDS] MODEL..." >&2; exit 2; }

SDIST_VERSION=0.3.36
peer=${BEAST_PEER_DIR:-$HOME/.cache/beast-peer}
if [ -z "${LLAMA_BENCH:-}" ]; then
  LLAMA_BENCH=$peer/build/bin/llama-bench
  if [ ! -x "$LLAMA_BENCH" ]; then
    echo "building llama.cpp (llama-cpp-python $SDIST_VERSION sdist) in $peer ..." >&2
    mkdir -p "$peer"
    python3 -m pip download -q --no-deps --no-binary :all: -d "$peer" "llama-cpp-python==$SDIST_VERSION"
    tar -xzf "$peer/llama_cpp_python-$SDIST_VERSION.tar.gz" -C "$peer"
    cmake -S "$peer/llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp" -B "$peer/build" \
      -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >"$peer/cmake.log"
    cmake --build "$peer/build" --target llama-bench -j"$(nproc)" >"$peer/build.log"
  fi
fi
export LD_LIBRARY_PATH="$(dirname "$LLAMA_BENCH")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
beast=${BEAST:-$root/build/beast}
[ -x "$beast" ] || { echo "no $beast: run scripts/setup.sh first" >&2; exit 1; }

out=$root/bench/results/compare-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
{ echo "date: $(date -u)"; echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)";
  echo "cores: $(nproc)"; echo "flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|f16c|avx512f|avx512_vnni)$' | tr '\n' ' ')";
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "beast: $(git -C "$root" rev-parse --short HEAD)";
  echo "llama-bench: $LLAMA_BENCH"; } >"$out/machine.txt"

# tokens/s mean for a test from llama-bench csv / beast csv
lb_ts() { awk -F, -v t="$2" 'NR==1{for(i=1;i<=NF;i++)h[$i]=i;next}
  {gsub(/"/,"")} ($(h["n_prompt"])==(t=="pp"?P:0) && $(h["n_gen"])==(t=="tg"?N:0)){print $(h["avg_ts"])}' P="$p" N="$n" "$1"; }
be_ts() { awk -F, -v t="$2" 'NR>1 && ((t=="pp" && $6>0) || (t=="tg" && $7>0)){print $9}' "$1"; }

echo "| model | test | llama.cpp t/s | beast t/s | beast / llama.cpp |"
echo "|---|---|---|---|---|"
for m in "$@"; do
  name=$(basename "$m" .gguf)
  for k in $(seq 1 "$rounds"); do
    "$LLAMA_BENCH" -m "$m" -t "$threads" -p "$p" -n "$n" -r "$reps" -o csv >"$out/$name.llama.$k.csv" 2>"$out/$name.llama.$k.log"
    "$beast" bench -m "$m" -t "$threads" -p "$p" -n "$n" -r "$reps" -o csv >"$out/$name.beast.$k.csv"
  done
  for t in pp tg; do
    a=$(for k in $(seq 1 "$rounds"); do lb_ts "$out/$name.llama.$k.csv" $t; done | awk '{s+=$1}END{if(NR)printf "%.2f",s/NR}')
    b=$(for k in $(seq 1 "$rounds"); do be_ts "$out/$name.beast.$k.csv" $t; done | awk '{s+=$1}END{if(NR)printf "%.2f",s/NR}')
    r=$(awk -v a="$a" -v b="$b" 'BEGIN{if(a>0)printf "%.2fx",b/a; else print "-"}')
    label=$([ $t = pp ] && echo "pp$p" || echo "tg$n")
    echo "| $name | $label | $a | $b | $r |"
  done
done | tee "$out/table.md"
echo >&2 "raw results: $out"
