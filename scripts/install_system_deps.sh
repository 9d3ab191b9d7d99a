#!/usr/bin/env bash
# Installs bubblewrap (the grader's sandbox) when it is missing and this user may install packages.
# Without it the grader refuses to run untrusted code unless --allow-unisolated is given.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (sandbox for graded code)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
else
    echo "WARNING: bubblewrap (bwrap) is not installed and cannot be installed automatically." >&2
    echo "         Install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)." >&2
fi
