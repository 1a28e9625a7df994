#!/usr/bin/env bash
# Set up everything the platform and its tests need, in ./.venv. Safe to run again:
# a stamp of the pinned inputs makes a set-up machine skip the installs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# Debian packages: Chromium for the browser tests (tests/test_browser.py; Playwright drives it
# and never downloads a browser of its own) and redis-server, the cluster's call-state store
# (VOICE_STORE_URL), which the tests start for real on a loopback port; espeak-ng, the second
# voice the capacity sweep's callers speak in (loadtests/utterances.py); prometheus, which
# tests/test_prometheus.py runs against the platform (deploy/prometheus/prometheus.yml) and which
# brings promtool, the alert rules' unit tester.
apt_packages=""
[ -x /usr/bin/chromium ] || apt_packages="chromium fonts-dejavu-core"
command -v redis-server >/dev/null || apt_packages="$apt_packages redis-server"
command -v espeak-ng >/dev/null || apt_packages="$apt_packages espeak-ng"
command -v prometheus >/dev/null || apt_packages="$apt_packages prometheus"
if [ -n "$apt_packages" ] && command -v apt-get >/dev/null; then
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    # shellcheck disable=SC2086  # the list splits into packages
    $as_root apt-get install -y -qq --no-install-recommends $apt_packages >/dev/null \
        || { $as_root apt-get update -qq && $as_root apt-get install -y -qq --no-install-recommends $apt_packages >/dev/null; }
fi
stamp=".venv/.setup-$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    echo "setup: already done ($stamp)"
    exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first, the CPU build: silero-vad and sentence-transformers would otherwise pull a CUDA
# build of several GB. Where no local wheel is configured, TORCH_INDEX_URL can point pip at
# PyTorch's CPU index.
# pip compiles each package's bytecode one file after another: skipped there, then compiled on
# every core at once (a Python run with PYTHONDONTWRITEBYTECODE would otherwise compile at each
# import, in every Ray worker). A file compileall cannot read (a package's template) is skipped
# as pip skips it.
.venv/bin/python -m pip install --quiet --no-compile ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
.venv/bin/python -m pip install --quiet --no-compile -c constraints.txt -e ".[test]"
.venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null || true
.venv/bin/python -m pip check
rm -f .venv/.setup-*
touch "$stamp"
echo "setup: done"
