#!/bin/sh
# agentdeploy base build: make sure the starting image has what a HoloDeck base needs: Python 3.10 or newer
# with venv (for the builder stage; with --runtime, for the final image). A Debian image without them gets
# them from apt; anything else that lacks them stops the build with a line starting "agentdeploy: ".
set -eu
fail() {
  echo "agentdeploy: $*" >&2
  exit 3
}
usable() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || return 1
  [ "${1:-}" = --runtime ] && return 0
  python3 -m venv /tmp/agentdeploy-venv-probe >/dev/null 2>&1 || return 1
  rm -rf /tmp/agentdeploy-venv-probe
}
if usable "${1:-}"; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  fail "the starting image has no Python 3.10+ with venv and no apt-get to install it; start from python:3.11-slim (--from)"
fi
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates
rm -rf /var/lib/apt/lists/*
usable "${1:-}" || fail "the starting image's Python is older than 3.10; start from python:3.11-slim (--from)"
