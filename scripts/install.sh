#!/usr/bin/env bash
# Creates the virtualenv and installs imagepipe with its dev tools.
# The one install script: the Makefile and the container image both use it.
#
#   bash scripts/install.sh            # .venv with the dev extras (what `make install` does)
#   bash scripts/install.sh --no-dev   # runtime dependencies only (the container image)
#
# PYTHON, VENV and EXTRAS (comma-separated extras; set but empty means none) override
# the defaults.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS-dev}

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
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e "$spec"
