# serve.sh: sourced by the tests/cli/server_*.sh wrappers. Starts `beast
# serve --port 0` on the default model, reads the URL from its ready line,
# and on exit stops every server it started (SIGTERM, then checks it shut
# down cleanly), failing the test when a server's stderr holds a sanitizer
# report. Skips (exit 77) when the binary has no serve command or the model
# is missing. BEAST_SERVE_CMD replaces "$BEAST_BIN/beast serve -m MODEL"
# (e.g. to run the tests against another OpenAI-compatible server).
set -u
srv_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
srv_py=$srv_root/tests/server
srv_tmp=$(mktemp -d)
declare -A SRV_PID=() SRV_URL=()
srv_status=0

if [ -z "${BEAST_SERVE_CMD:-}" ]; then
  srv_bin=${BEAST_BIN:?}/beast
  srv_model=${BEAST_SERVE_MODEL:-${BEAST_MODELS_DIR:-$srv_root/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
  [ -x "$srv_bin" ] || { echo "skip: no $srv_bin"; exit 77; }
  if "$srv_bin" serve --help 2>&1 | grep -q "unknown command"; then
    echo "skip: this beast has no serve command (built without libmicrohttpd/jansson)"; exit 77
  fi
  [ -f "$srv_model" ] || { echo "skip: no model $srv_model (scripts/fetch-models.sh)"; exit 77; }
  BEAST_SERVE_CMD="$srv_bin serve -m $srv_model"
fi

# srv_need_py MODULE...: the Python packages a test needs (installed by scripts/deps.sh)
srv_need_py() {
  local m
  for m in "$@"; do
    python3 -c "import $m" 2>/dev/null ||
      { echo "FAIL: python3 module '$m' missing: python3 -m pip install -r tests/server/requirements.txt (scripts/deps.sh does)"; exit 1; }
  done
}

# srv_start NAME [extra serve options]: starts a server; sets SRV_URL[NAME]
srv_start() {
  local name=$1; shift
  # shellcheck disable=SC2086
  $BEAST_SERVE_CMD --port 0 "$@" >"$srv_tmp/$name.out" 2>"$srv_tmp/$name.err" &
  SRV_PID[$name]=$!
  local i url=""
  for i in $(seq 1 600); do
    url=$(cat "$srv_tmp/$name.out" "$srv_tmp/$name.err" 2>/dev/null |
      grep -m1 '^beast: serving' | grep -o 'http://[^ ]*' | head -n1 || true)
    [ -n "$url" ] && break
    if ! kill -0 "${SRV_PID[$name]}" 2>/dev/null; then
      echo "FAIL: server $name exited before it was ready:"; sed 's/^/    /' "$srv_tmp/$name.err"
      exit 1
    fi
    sleep 0.1
  done
  [ -n "$url" ] || { echo "FAIL: server $name printed no ready line in 60 s"; exit 1; }
  SRV_URL[$name]=${url%/}
  echo "server $name: ${SRV_URL[$name]} (pid ${SRV_PID[$name]}): $(grep -h -m1 '^beast: serving' "$srv_tmp/$name.out" "$srv_tmp/$name.err")"
}

# srv_stop NAME: SIGTERM, wait up to 30 s; a clean shutdown exits 0
srv_stop() {
  local name=$1 pid=${SRV_PID[$1]:-} i code
  [ -n "$pid" ] || return 0
  unset "SRV_PID[$name]"
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; code=$?
    echo "FAIL: server $name died during the test (exit $code)"; srv_status=1
  else
    kill -TERM "$pid"
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "FAIL: server $name still running 30 s after SIGTERM"; kill -KILL "$pid"; srv_status=1
      wait "$pid" 2>/dev/null
    else
      wait "$pid"; code=$?
      if [ "$code" -eq 0 ]; then echo "ok   server $name shut down cleanly on SIGTERM"
      else echo "FAIL: server $name exited $code after SIGTERM (want 0)"; srv_status=1; fi
    fi
  fi
  if grep -q -e "ERROR: AddressSanitizer" -e "ERROR: LeakSanitizer" -e "runtime error:" "$srv_tmp/$name.err"; then
    echo "FAIL: sanitizer report in server $name's stderr:"; sed 's/^/    /' "$srv_tmp/$name.err"; srv_status=1
  fi
}

srv_cleanup() {
  local rc=$? name
  for name in "${!SRV_PID[@]}"; do srv_stop "$name"; done
  if [ "$rc" -ne 0 ] || [ "$srv_status" -ne 0 ]; then
    for f in "$srv_tmp"/*.err; do
      [ -s "$f" ] && { echo "--- tail of $(basename "$f")"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$srv_tmp"
  [ "$rc" -eq 0 ] && rc=$srv_status
  exit "$rc"
}
trap srv_cleanup EXIT
trap 'exit 130' INT TERM
