#!/usr/bin/env bash
# server_openai.sh: the official openai Python client and curl against
# `beast serve` (tests/server/test_openai.py), plus a server with --api-key.
source "$(dirname "$0")/../server/serve.sh"
srv_need_py openai
srv_start main --parallel 4
srv_start keyed --parallel 1 --api-key sekrit-key
python3 "$srv_py/test_openai.py" "${SRV_URL[main]}" "${SRV_URL[keyed]}" sekrit-key
