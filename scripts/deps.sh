#!/usr/bin/env bash
# Installs everything ecflow needs to build, run and test on Debian 12.
# Idempotent and quiet when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libglib2.0-dev libjson-glib-dev libyaml-dev librdkafka-dev libcurl4-openssl-dev
  libmicrohttpd-dev libsimdjson-dev zlib1g-dev libzstd-dev libsnappy-dev
  python3 python3-pip curl time procps kcat wrk default-jre-headless maven
  chromium  # the status page test drives it headless (tests/integration/browser.py)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Test-only Python packages (pytest, and the independent Iceberg readers).
# pip is asked only when something is missing or at another version.
req="$(cd "$(dirname "$0")/.." && pwd)/tests/requirements.txt"
if ! python3 - "$req" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    if want and version(name) != want or not want and not version(name):
        sys.exit(1)
PY
then
  echo "deps: installing Python test packages" >&2
  python3 -m pip install -q -r "$req" 2>/dev/null || python3 -m pip install -q --break-system-packages -r "$req"
fi
