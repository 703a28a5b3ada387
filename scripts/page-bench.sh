#!/usr/bin/env bash
# The page's first-load figures of docs/BENCHMARKS.md: transferred bytes and time to
# connected per transport (median of 10 loads each), against the release relay on loopback.
# Appends the JSON report to docs/bench/page-load.jsonl and prints the summary.
#   ./scripts/page-bench.sh [LOADS]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-page.sh >/dev/null
cargo build --release --locked -q -p relay
RELAY_BIN=target/release/relay node bench/page/load.mjs "${1:-10}" | tee -a docs/bench/page-load.jsonl
