#!/usr/bin/env bash
# Browser tests drive the system Chromium (Playwright cannot download its own browser here).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is missing: run 'sudo apt-get install -y chromium' (browser tests will be skipped)" >&2
  fi
fi
