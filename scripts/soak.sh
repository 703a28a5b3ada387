#!/usr/bin/env bash
# The soak run of docs/RELIABILITY.md: one relay (in memory) under 10 minutes of connection
# churn on all four transports with a steady publisher; its resident memory and open file
# descriptors, sampled every 10 s, must stay within ±10 % after a 2-minute warm-up, and
# every client must receive every message once, in order, across its reconnections.
# Appends the JSON report to docs/bench/soak.jsonl; exits non-zero when not met.
#   ./scripts/soak.sh                        the documented run
#   ./scripts/soak.sh --duration 60 ...      any `relay-bench soak` option
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# Every client here is 127.0.0.1: per-client budgets are lifted, as in the other load runs.
export_load_test_budgets
cargo build --release --locked -q -p relay -p relay-bench
report=$(target/release/relay-bench soak --relay-bin target/release/relay "$@")
echo "$report" | tee -a docs/bench/soak.jsonl
echo "$report" | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["met"] else 1)'
