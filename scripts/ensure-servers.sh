#!/usr/bin/env bash
# Starts the local PostgreSQL and RabbitMQ if they are installed here but down, and
# installs docker-compose (for the deploy file checks) if it is missing.
# (imagepipe never starts them itself in production; this is for dev machines and CI.)
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 90); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "ensure-servers: $name did not come up on port $port" >&2
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

# tests/unit/test_deploy.py validates deploy/docker-compose.yml with `docker-compose config`,
# which needs no Docker daemon: Debian's package (without its recommended docker.io) is enough.
# jq is what the README's grpcurl examples pipe into, and their test runs them as written.
# chromium is Debian's browser, which tests/integration/test_browser.py drives.
# A failed install is not fatal here; the tests that need a tool fail and name it.
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v jq >/dev/null || missing+=(jq)
# The browser the delivery tests drive through Playwright (which never downloads one here).
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-servers: installing ${missing[*]}"
  apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  }
  # Try the package lists as they are first; refresh them only when that fails.
  apt_install 2>/dev/null || { as_root apt-get update -qq && apt_install; } \
    || echo "ensure-servers: could not install ${missing[*]} (apt-get install ${missing[*]})" >&2
fi

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "ensure-servers: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    wait_port 5432 PostgreSQL || exit 1
  else
    echo "ensure-servers: PostgreSQL is not reachable on 127.0.0.1:5432 and not installed here" >&2
    exit 1
  fi
fi

if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "ensure-servers: starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ || exit 1
    rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  else
    echo "ensure-servers: RabbitMQ is not reachable on 127.0.0.1:5672 and not installed here" >&2
    exit 1
  fi
fi
