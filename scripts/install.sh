#!/usr/bin/env bash
# Creates the virtualenv and installs imagepipe with its dev tools.
# The one install script: the Makefile and the container image both use it.
#
# Three projects, all editable: the contract (packages/contract, imagepipe.v1 from
# `make proto`), the client with its CLI (packages/client) and the services (the root),
# which depend on the other two. They go in one pip run, so the root's requirements on
# them are met by these directories and never looked up on an index.
#
#   bash scripts/install.sh            # .venv with the dev and bench extras (`make install`;
#                                      # mypy checks bench/ against the servers it drives)
#   bash scripts/install.sh --no-dev   # runtime dependencies only (the container image)
#
# PYTHON, VENV and EXTRAS (comma-separated extras; set but empty means none) override
# the defaults.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS-dev,bench}

for arg in "$@"; do
  case "$arg" in
    --no-dev) EXTRAS="" ;;
    *) echo "install.sh: unknown argument $arg (only --no-dev)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt \
  -e packages/contract -e packages/client -e "$spec"
# The `imagepipe` command belonged to the root project before packages/client took it
# over: upgrading a venv from then, pip uninstalls the old root after installing the
# client and deletes the command with it. Put it back.
[ -e "$VENV/bin/imagepipe" ] \
  || "$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall -e packages/client
