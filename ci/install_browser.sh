#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the user-study browser test
# (tests/test_userstudy_app.py), unless both are already on PATH. Idempotent; needs root or sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "installed $(chromium --version 2>/dev/null | head -n 1)"
