#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the project. Idempotent: each step
# checks first, so running it again costs a few seconds.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if ! have cargo; then
    echo "setup: Rust is missing; install it with rustup (https://rustup.rs), then re-run." >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
echo "setup: toolchain ready ($(rustc --version))"
