#!/usr/bin/env bash
# server_webui.sh: the web chat page at / in headless Chromium (DevTools
# protocol): type, send, streamed reply, history, Stop; the screenshot goes to
# $BEAST_BIN/artifacts/webui.png (tests/server/test_webui.py).
source "$(dirname "$0")/../server/serve.sh"
command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||
  { echo "FAIL: chromium missing (scripts/deps.sh installs it)"; exit 1; }
srv_start main --parallel 2
python3 "$srv_py/test_webui.py" "${SRV_URL[main]}" "${BEAST_BIN:-.}/artifacts/webui.png"
