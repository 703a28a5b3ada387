#!/usr/bin/env bash
# Builds what is missing and runs the chat at http://127.0.0.1:3000 (in-memory bus).
# Usage: ./scripts/run.sh   (settings: RELAY_* variables, see `cargo run -p relay -- --help`)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/build-page.sh
# WebTransport on a local UDP port (the page trusts its self-signed certificate by hash).
export RELAY_WT_ADDR="${RELAY_WT_ADDR:-127.0.0.1:4433}"
exec cargo run --release --locked -p relay
