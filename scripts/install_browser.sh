#!/usr/bin/env bash
# Debian's Chromium for the web page's end-to-end test (browsers cannot be downloaded by Playwright here).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: run 'sudo apt-get install -y chromium' to run the browser test (it is skipped)." >&2
  exit 0
fi
echo "installing chromium (Debian package) for the browser test ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
