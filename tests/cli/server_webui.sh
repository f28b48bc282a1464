#!/usr/bin/env bash
# server_webui.sh: the web chat page at / in headless Chromium (DevTools
# protocol): type, send, streamed reply, history, Stop, API key field; the
# screenshot goes to
# $BEAST_BIN/artifacts/webui.png (tests/server/test_webui.py).
source "$(dirname "$0")/../server/serve.sh"
command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||
  { echo "FAIL: chromium missing (scripts/deps.sh installs it)"; exit 1; }
srv_start main --parallel 2
srv_start keyed --parallel 1 --api-key webui-key
python3 "$srv_py/test_webui.py" "${SRV_URL[main]}" "${BEAST_BIN:-.}/artifacts/webui.png" "${SRV_URL[keyed]}" webui-key
