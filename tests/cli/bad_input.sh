#!/usr/bin/env bash
# bad_input.sh: every kind of bad input gets one clear error line and a
# non-zero exit from the beast CLI, never a crash: missing file, non-GGUF,
# truncated GGUF, unknown architecture, unsupported tensor type, prompt longer
# than the context, bad options (exit code 2).
set -u
bin=${BEAST_BIN:?}/beast
gen=${BEAST_BIN:?}/beast-gen
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0; passes=0

# expect NAME WANT_CODE PATTERN -- command...
expect() {
  local name=$1 want=$2 pat=$3; shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local code=$?
  local lines; lines=$(grep -c . "$tmp/err")
  if [ "$code" -ne "$want" ] || ! grep -q -- "$pat" "$tmp/err" || [ "$code" -ge 128 ]; then
    echo "FAIL $name: exit $code (want $want), stderr:"; sed 's/^/    /' "$tmp/err"; fails=$((fails + 1))
  elif [ "$want" -eq 1 ] && [ "$lines" -ne 1 ]; then
    echo "FAIL $name: expected one error line, got $lines:"; sed 's/^/    /' "$tmp/err"; fails=$((fails + 1))
  else
    echo "ok   $name: $(head -n1 "$tmp/err")"; passes=$((passes + 1))
  fi
}

"$gen" --preset tiny-llama --type Q8_0 -q -o "$tmp/tiny.gguf" || { echo "FAIL: beast-gen"; exit 1; }
printf 'hello, this is not a model\n' >"$tmp/text.gguf"
head -c 3000 "$tmp/tiny.gguf" >"$tmp/trunc.gguf"
# unknown architecture: rename every "llama" (the value and the key prefix)
LC_ALL=C sed 's/llama/llamx/g' "$tmp/tiny.gguf" >"$tmp/arch.gguf"
# a valid GGUF whose one tensor has type 16 (IQ2_XS), which beast does not support
python3 - "$tmp/type.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack('<Q', len(b)) + b
h = b'GGUF' + struct.pack('<IQQ', 3, 1, 1)
h += s('general.architecture') + struct.pack('<I', 8) + s('llama')
h += s('token_embd.weight') + struct.pack('<I', 2) + struct.pack('<QQ', 256, 4) + struct.pack('<I', 16) + struct.pack('<Q', 0)
h += b'\0' * ((32 - len(h) % 32) % 32)
open(sys.argv[1], 'wb').write(h + b'\0' * 4096)
PY

export BEAST_MODEL=
expect missing-file 1 "No such file" -- "$bin" run -m "$tmp/nope.gguf" -p hi
expect not-gguf 1 "not a GGUF file" -- "$bin" run -m "$tmp/text.gguf" -p hi
expect truncated 1 "past end of file\|bytes left\|too small" -- "$bin" run -m "$tmp/trunc.gguf" -p hi
expect unknown-arch 1 "unsupported architecture 'llamx'" -- "$bin" run -m "$tmp/arch.gguf" -p hi
expect unsupported-type 1 "type" -- "$bin" info "$tmp/type.gguf"
long=$(printf 'word %.0s' $(seq 1 200))
expect prompt-too-long 1 "prompt too long" -- "$bin" run -m "$tmp/tiny.gguf" -c 64 -p "$long"
expect bad-option 2 "unrecognized\|invalid\|unknown" -- "$bin" run --no-such-option
expect bad-value 2 "not a whole number" -- "$bin" run -n abc -p hi
expect no-prompt 2 "prompt is required" -- "$bin" run -m "$tmp/tiny.gguf"
expect bad-gpu-layers 2 "gpu-layers: '-2'" -- "$bin" run -m "$tmp/tiny.gguf" -ngl -2 -p hi
expect ngl-no-value 2 "requires an argument" -- "$bin" run -m "$tmp/tiny.gguf" -p hi -ngl
expect serve-bad-gpu-layers 2 "gpu-layers: '-2'" -- "$bin" serve -m "$tmp/tiny.gguf" -ngl -2
expect unknown-command 2 "unknown command" -- "$bin" frobnicate
expect info-no-model 2 "expected one MODEL" -- "$bin" info
# and a good run on the tiny model works
"$bin" run -m "$tmp/tiny.gguf" -p "hello" -n 8 --greedy >"$tmp/out" 2>"$tmp/err" \
  && grep -q "generated 8 tokens" "$tmp/err" && { echo "ok   tiny-run"; passes=$((passes + 1)); } \
  || { echo "FAIL tiny-run"; cat "$tmp/err"; fails=$((fails + 1)); }
# -ngl N (llama.cpp's spelling of --gpu-layers) is taken as an option, -n too
"$bin" run -m "$tmp/tiny.gguf" -p "hello" -ngl 1 -n 8 --greedy >"$tmp/out" 2>"$tmp/err" \
  && grep -q "generated 8 tokens" "$tmp/err" && { echo "ok   tiny-run-ngl"; passes=$((passes + 1)); } \
  || { echo "FAIL tiny-run-ngl"; cat "$tmp/err"; fails=$((fails + 1)); }
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
