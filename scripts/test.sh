#!/usr/bin/env bash
# Set everything up (first time only) and run the whole test suite: real Ray Serve, real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
