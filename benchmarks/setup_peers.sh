#!/usr/bin/env bash
# Install the peer tools of benchmarks/compare_peers.py that are not Python packages.
# SWarp (Debian package `swarp`, binary `SWarp`); reproject is already in requirements.lock.
# Needs root (or sudo) and the Debian package archive; does nothing when SWarp is present.
set -euo pipefail

if command -v SWarp >/dev/null 2>&1 || command -v swarp >/dev/null 2>&1; then
    echo "SWarp already installed: $(command -v SWarp || command -v swarp)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup_peers: not root and no sudo; install the Debian package 'swarp' by hand" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends swarp
echo "SWarp installed: $(command -v SWarp || command -v swarp)"
