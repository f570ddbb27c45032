#!/usr/bin/env sh
# The google provider's schema for tests/terraform/test_provider_schema.py: @cdktf/provider-google, pinned
# by package-lock.json, into node_modules/ here (.npmrc: no install scripts, no peers). Needs npm.
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "the Terraform schema check needs npm (Node.js) for @cdktf/provider-google: install it, e.g. 'sudo apt-get install npm'" >&2
  exit 1
fi
npm ci --silent
test -f node_modules/@cdktf/provider-google/.jsii
