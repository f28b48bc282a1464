#!/usr/bin/env bash
# server_ollama.sh: Ollama-style endpoints, /health and /metrics of `beast
# serve` (tests/server/test_ollama.py).
source "$(dirname "$0")/../server/serve.sh"
srv_start main --parallel 2
python3 "$srv_py/test_ollama.py" "${SRV_URL[main]}"
