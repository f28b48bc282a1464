#!/usr/bin/env bash
# server_openai.sh: the official openai Python client and curl against
# `beast serve` (tests/server/test_openai.py), plus a server with --api-key
# and a small one (--parallel 1 --queue 1 --timeout 2) for admission control.
source "$(dirname "$0")/../server/serve.sh"
srv_need_py openai
srv_start main --parallel 4
srv_start keyed --parallel 1 --api-key sekrit-key
srv_start small --parallel 1 --queue 1 --timeout 2 --ctx 1024
python3 "$srv_py/test_openai.py" "${SRV_URL[main]}" --keyed "${SRV_URL[keyed]}" --key sekrit-key \
  --small "${SRV_URL[small]}"
