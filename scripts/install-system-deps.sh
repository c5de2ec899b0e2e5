#!/usr/bin/env bash
# Install the Debian packages axcnn needs: `data` (Fashion-MNIST for the demo) or `test`
# (data + the EDA tools and the headless browser the test-suite runs for real). Idempotent: installs only what is
# missing; does nothing (with a note) where apt-get or root is unavailable.
set -euo pipefail
what=${1:-test}
pkgs=(dataset-fashion-mnist)
if [ "$what" = test ]; then
  pkgs+=(yosys iverilog opensta gcc chromium chromium-driver)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "note: cannot install ${missing[*]} (needs root and apt-get); tests that need them are skipped" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
