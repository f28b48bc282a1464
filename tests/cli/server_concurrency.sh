#!/usr/bin/env bash
# server_concurrency.sh: 32 concurrent greedy streams on `beast serve
# --parallel 8` get the texts they get alone (tests/server/test_concurrency.py);
# again with --deterministic when the server has it (then identical).
# BEAST_TEST_QUICK=1 (sanitizer runs): 8 clients, 8 tokens, one pass.
source "$(dirname "$0")/../server/serve.sh"
srv_start main --parallel 8
python3 "$srv_py/test_concurrency.py" "${SRV_URL[main]}" || exit 1
srv_stop main
if [ "${BEAST_TEST_QUICK:-}" = 1 ]; then
  echo "note: quick run (sanitizers): 8 clients, no --deterministic pass"
elif $BEAST_SERVE_CMD --help 2>&1 | grep -q -- "--deterministic"; then
  srv_start det --parallel 8 --deterministic
  python3 "$srv_py/test_concurrency.py" "${SRV_URL[det]}" --deterministic --max-tokens 12 || exit 1
else
  echo "note: no --deterministic in this server's --help; batch-independence not checked"
fi
