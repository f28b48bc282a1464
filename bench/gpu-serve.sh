#!/usr/bin/env bash
# gpu-serve.sh: issue 5's server throughput table on the GPU machine: `beast
# serve` and llama.cpp's `llama-server -np 32 -cb` on the same generated
# Llama-3.2-1B-shape Q4_K_M file, one after the other in one run, measured by
# the same client (bench/loadtest.py: 1, 8 and 32 concurrent streaming
# clients, greedy, ignore_eos so every request generates exactly -n tokens).
#
#   here:   bench/gpu-serve.sh --pack BUILD_DIR   (a -DBEAST_CUDA=ON
#           -DBEAST_NATIVE=OFF build with the server: writes
#           .peer/beast-serve-bin.tar.xz)
#   device: bench/gpu-serve.sh      (carry .peer, .deb, .deb-server)
#
# llama.cpp is built by bench/peer-cuda.sh in the background while beast is
# measured. Libraries the device lacks come from the carried Debian packages.
# Output ($OUT or ./gpu-out): serve.md serve.csv log.txt env.txt
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--pack" ]; then
    b=${2:?usage: $0 --pack BUILD_DIR}
    git -C "$ROOT" rev-parse --short HEAD >"$b/COMMIT"
    mkdir -p "$ROOT/.peer"
    tar -cJf "$ROOT/.peer/beast-serve-bin.tar.xz" -C "$b" COMMIT beast beast-gen
    ls -l "$ROOT/.peer/beast-serve-bin.tar.xz"
    exit 0
fi
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
T0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }
N=${N:-128} REQS=${REQS:-4} CLIENTS=${CLIENTS:-1,8,32}

stamp "start: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
{ nvidia-smi; nproc; free -g; } >"$OUT/env.txt" 2>&1
setsid bash "$ROOT/bench/peer-cuda.sh" /tmp/peer >/tmp/peer.log 2>&1 < /dev/null &

D=/tmp/beast-deps
mkdir -p $D
for f in "$ROOT"/.deb/*.deb "$ROOT"/.deb-server/*.deb; do dpkg -x "$f" $D; done
export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
BIN=/tmp/beast-bin
mkdir -p $BIN && tar -xJf "$ROOT/.peer/beast-serve-bin.tar.xz" -C $BIN
cat $BIN/COMMIT >>"$LOG"
M=/tmp/llama-1b-q4km.gguf
stamp "beast-gen llama-1b Q4_K_M"
$BIN/beast-gen --preset llama-1b --type Q4_K_M --seed 7 -o $M >>"$LOG" 2>&1

lt() { python3 "$ROOT/bench/loadtest.py" --url "$1" --label "$2" --clients "$CLIENTS" \
    -n "$N" -r "$REQS" --completions --ignore-eos --model m --csv "$OUT/serve.csv" \
    >>"$OUT/serve.md" 2>>"$LOG"; }

stamp "beast serve"
$BIN/beast serve -m $M --port 18080 --parallel 32 --ctx 1024 >/tmp/beast-serve.log 2>&1 &
bp=$!
for _ in $(seq 120); do grep -q "serving" /tmp/beast-serve.log && break; sleep 0.5; done
head -3 /tmp/beast-serve.log >>"$LOG"
lt http://127.0.0.1:18080 beast
kill -TERM $bp; wait $bp
stamp "beast done"

stamp "waiting for the peer build"
for _ in $(seq 400); do grep -q "^/tmp/peer/build/bin" /tmp/peer.log && break; sleep 1; done
tail -3 /tmp/peer.log >>"$LOG"
PB=/tmp/peer/build/bin
if [ -x $PB/llama-server ]; then
    stamp "llama-server"
    LD_LIBRARY_PATH=$PB:$LD_LIBRARY_PATH $PB/llama-server -m $M -ngl 99 -np 32 -cb \
        -c $((32 * 1024)) --port 18081 >/tmp/llama-server.log 2>&1 &
    lp=$!
    for _ in $(seq 240); do python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:18081/health', timeout=2)" 2>/dev/null && break; sleep 0.5; done
    lt http://127.0.0.1:18081 llama-server
    kill -TERM $lp; wait $lp
    grep -m3 -i "flash\|n_parallel\|ctx" /tmp/llama-server.log >>"$LOG"
else
    stamp "peer build failed"; tail -20 /tmp/peer.log >>"$LOG"
fi
stamp "end"
cat "$OUT/serve.md"
