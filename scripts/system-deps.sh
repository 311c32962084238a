#!/usr/bin/env bash
# Debian packages the test suite drives for real (age for secrets interop, chromium for
# the browser and report tests, Node.js and npm for the flagd-core compatibility check).
# As root with apt (CI), installs whatever is missing; otherwise prints the command and
# lets the tests that need a tool skip with it. An entry is "package" or "package:command".
set -euo pipefail
packages=(age chromium nodejs:node npm)
missing=()
for entry in "${packages[@]}"; do
    command -v "${entry##*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
else
    echo "note: tests that need ${missing[*]} will skip; install with: sudo apt-get install ${missing[*]}" >&2
fi
