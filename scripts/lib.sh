# shellcheck shell=bash
# Shared helpers for scripts/test and scripts/demo: idempotent, quiet installs of what the tests and the
# demo need on a fresh Debian 12 machine (root). Source it; do not run it.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PEERS="$REPO/tests/peers"
STAMP_DIR="$REPO/.test-deps"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt packages that provide the given commands, as "command:package" pairs; installs only what is missing.
ensure_apt() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Never let a package start a daemon (prometheus would): a policy-rc.d that refuses, for this install only.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$created_policy" ] || $sudo rm -f "$policy"
}

# Debian tools the tests use: promtool (checks /metrics), thrift (generates Apache Thrift peers),
# redis-server (the rate-limit service's Redis counters).
ensure_system_tools() {
  ensure_apt promtool:prometheus thrift:thrift-compiler redis-server:redis-server
  command -v node >/dev/null 2>&1 || ensure_apt node:nodejs
  command -v npm >/dev/null 2>&1 || ensure_apt npm:npm
}

_deps_hash() {
  cat "$REPO/tests/requirements.txt" "$PEERS/package.json" "$PEERS/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1
}

# Python venv with tests/requirements.txt.
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "python3 -m venv .venv"
    python3 -m venv "$VENV"
  fi
  log "pip install -r tests/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/tests/requirements.txt"
}

# Node peers (sofa-rpc-node, dubbo-remoting, hessian.js) into tests/peers/node_modules.
ensure_node_peers() {
  log "npm install (tests/peers)"
  if [ -f "$PEERS/package-lock.json" ]; then
    npm ci --prefix "$PEERS" --no-audit --no-fund --loglevel=error >/dev/null
  else
    npm install --prefix "$PEERS" --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

# Everything, skipped when the inputs did not change since the last successful install.
ensure_test_deps() {
  ensure_system_tools
  local hash
  hash="$(_deps_hash)"
  if [ -f "$STAMP_DIR/deps" ] && [ "$(cat "$STAMP_DIR/deps")" = "$hash" ] \
    && [ -x "$VENV/bin/python" ] && [ -d "$PEERS/node_modules/sofa-rpc-node" ]; then
    return 0
  fi
  ensure_venv
  ensure_node_peers
  mkdir -p "$STAMP_DIR"
  printf '%s\n' "$hash" >"$STAMP_DIR/deps"
}

# Only the Node peers (the demo needs no Python).
ensure_demo_deps() {
  command -v node >/dev/null 2>&1 || ensure_apt node:nodejs
  command -v npm >/dev/null 2>&1 || ensure_apt npm:npm
  [ -d "$PEERS/node_modules/sofa-rpc-node" ] || ensure_node_peers
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port="$1" deadline=$((SECONDS + ${2:-10}))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
