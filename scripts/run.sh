#!/usr/bin/env bash
# Set everything up (first time only) and start the platform on the embedded offline default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/voice-agent up "$@"
