#!/usr/bin/env bash
# server_fuzz.sh: the seeded HTTP request fuzzer (tests/server/fuzz_http.py)
# against `beast serve` for a bounded time (BEAST_FUZZ_SECONDS, default 60;
# 30 in BEAST_TEST_QUICK runs). The server must stay up, answer /health,
# shut down cleanly and write no sanitizer report.
source "$(dirname "$0")/../server/serve.sh"
det=()
if $BEAST_SERVE_CMD --help 2>&1 | grep -q -- "--deterministic"; then det=(--deterministic); fi
# --max-conns above what the fuzzer holds at once (4 workers, up to 200
# connections each in the "many" case): at the cap new connections wait in the
# kernel's backlog or are refused, which is the cap working, not a failure
srv_start main --parallel 4 --ctx 512 --queue 8 --timeout 60 --max-conns 1024 "${det[@]}"
python3 "$srv_py/fuzz_http.py" "${SRV_URL[main]}" "${det[@]}"
