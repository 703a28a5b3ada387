#!/usr/bin/env bash
# Runs the whole benchmark in one go — our relay (four transports) and the tutorial's Node
# server side by side on this machine — and regenerates docs/BENCHMARKS.md and its chart.
# About 15 minutes. Everything runs on 127.0.0.1 and stops by itself.
#   ./scripts/bench.sh            full run
#   QUICK=1 ./scripts/bench.sh    shorter runs, for trying the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export_load_test_budgets

./scripts/setup.sh
cargo build --release --locked -q -p relay -p relay-bench
./scripts/build-page.sh > target/page-size.txt
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

bench=target/release/relay-bench
out=docs/bench/results.jsonl
: > "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

if [ -n "${QUICK:-}" ]; then
    duration=3; warmup=1; ramp_duration=2; idle=1000
else
    duration=8; warmup=2; ramp_duration=4; idle=10000
fi


# A fresh server for each measurement, so that no run inherits another's rooms or memory.
start_relay() {
    relay_port=$(free_port)
    RELAY_ADDR="127.0.0.1:$relay_port" \
    RELAY_MAX_CONNECTIONS=30000 RUST_LOG=warn target/release/relay & relay_pid=$!
    pids+=("$relay_pid")
    wait_for "http://127.0.0.1:$relay_port/healthz"
    target=(--url "http://127.0.0.1:$relay_port" --pid "$relay_pid")
}
start_peer() {
    peer_port=$(free_port)
    PORT=$peer_port node bench/peer/server.js >/dev/null & relay_pid=$!
    pids+=("$relay_pid")
    wait_for "http://127.0.0.1:$peer_port/"
    target=(--peer --url "http://127.0.0.1:$peer_port" --pid "$relay_pid")
}
stop() { kill -TERM "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null || true; }

run() { "$bench" "$@" >> "$out"; }

echo "== fixed loads" >&2
for load in "100 1000" "1000 100"; do
    set -- $load
    for transport in ws sse longpoll shortpoll; do
        start_relay
        run fanout "${target[@]}" --transport "$transport" --receivers "$1" --rate "$2" \
            --duration "$duration" --warmup "$warmup"
        stop
    done
    start_peer
    run fanout "${target[@]}" --receivers "$1" --rate "$2" --duration "$duration" --warmup "$warmup"
    stop
done

echo "== ramps (100 receivers, p99 ≤ 100 ms)" >&2
for transport in ws sse longpoll; do
    start_relay
    run ramp "${target[@]}" --transport "$transport" --receivers 100 --rate 200 --factor 1.5 \
        --max-steps 12 --max-p99-ms 100 --duration "$ramp_duration" --warmup 1
    stop
done
start_peer
run ramp "${target[@]}" --receivers 100 --rate 200 --factor 1.5 --max-steps 12 --max-p99-ms 100 \
    --duration "$ramp_duration" --warmup 1
stop

echo "== idle connections ($idle)" >&2
for transport in ws sse longpoll; do
    start_relay
    run idle "${target[@]}" --transport "$transport" --connections "$idle" --settle 3
    stop
done
start_peer
run idle "${target[@]}" --connections "$idle" --settle 3
stop

python3 scripts/bench-report.py "$out" target/page-size.txt
