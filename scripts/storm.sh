#!/usr/bin/env bash
# The restart storm of docs/RELIABILITY.md: 2 000 clients (WebSocket, SSE, long polling) on
# two relays sharing a fresh Redis, a steady publisher; one relay gets SIGTERM and comes back.
# Appends the JSON report to docs/bench/storm.jsonl and prints the summary.
#   ./scripts/storm.sh                      the documented run
#   ./scripts/storm.sh --clients 300 ...    any `relay-bench storm` option
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# Per-client budgets lifted (every client here is 127.0.0.1); admission is what is measured,
# so RELAY_ACCEPT_RATE comes from the tool's --accept-rate.
export_load_test_budgets
unset RELAY_ACCEPT_RATE
cargo build --release --locked -q -p relay -p relay-bench
redis_dir=$(mktemp -d)
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$redis_dir" \
    >/dev/null & redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
target/release/relay-bench storm --relay-bin target/release/relay \
    --redis-url "redis://127.0.0.1:$redis_port/" \
    "$@" | tee -a docs/bench/storm.jsonl
