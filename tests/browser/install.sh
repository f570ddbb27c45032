#!/usr/bin/env sh
# What the browser tests of tenant_portal need besides the Python packages: Debian's chromium (Playwright
# drives it through executable_path; `playwright install` cannot download browsers here) and axe-core
# (npm, pinned by package-lock.json). Installs them when it can, else stops saying what to install.
set -eu
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser tests: installing Debian's chromium (apt-get install -y chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "browser tests need Chromium: install Debian's package, e.g. 'sudo apt-get install chromium'" >&2
    exit 1
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "browser tests need npm (Node.js) for axe-core: install it, e.g. 'sudo apt-get install npm'" >&2
  exit 1
fi
npm ci --no-audit --no-fund --silent
test -f node_modules/axe-core/axe.min.js
