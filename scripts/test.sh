#!/usr/bin/env bash
# Set everything up (first time only) and run the whole test suite: real Ray Serve, real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint and format are part of the suite: a violation fails it (configuration: pyproject.toml).
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --no-cache --check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
