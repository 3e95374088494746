#!/usr/bin/env bash
# Install the peer tools of benchmarks/compare_peers.py that are not Python packages:
# SWarp (Debian package `swarp`, binary `SWarp`) and Siril (Debian package `siril`, binary
# `siril-cli`); reproject is already in requirements.lock.
# Needs root (or sudo) and the Debian package archive; does nothing when both are present.
set -euo pipefail

missing=()
if ! command -v SWarp >/dev/null 2>&1 && ! command -v swarp >/dev/null 2>&1; then
    missing+=(swarp)
fi
if ! command -v siril-cli >/dev/null 2>&1; then
    missing+=(siril)
fi
if [ ${#missing[@]} -eq 0 ]; then
    echo "SWarp already installed: $(command -v SWarp || command -v swarp)"
    echo "Siril already installed: $(command -v siril-cli) ($(siril-cli --version 2>/dev/null))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup_peers: not root and no sudo; install the Debian packages ${missing[*]} by hand" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "SWarp installed: $(command -v SWarp || command -v swarp)"
echo "Siril installed: $(command -v siril-cli) ($(siril-cli --version 2>/dev/null))"
