#!/usr/bin/env bash
# Runs the whole benchmark in one go — our relay (four transports), the tutorial's Node server
# and the floor program (what a delivery physically costs here) side by side on this machine —
# and regenerates docs/BENCHMARKS.md and its chart.
# About 20 minutes. Everything runs on 127.0.0.1 and stops by itself.
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
    duration=3; warmup=1; ramp_duration=2; idle=1000; repeats=1
else
    duration=6; warmup=2; ramp_duration=4; idle=10000; repeats=${REPEATS:-3}
fi


# A fresh server for each measurement, so that no run inherits another's rooms or memory.
start_relay() {
    relay_port=$(free_port)
    RELAY_ADDR="127.0.0.1:$relay_port" RELAY_WT_ADDR=127.0.0.1:0 \
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
# The floor program prints its address once it listens.
start_floor() {
    local fifo
    fifo=$(mktemp -u) && mkfifo "$fifo"
    "$bench" floor --addr 127.0.0.1:0 > "$fifo" & relay_pid=$!
    pids+=("$relay_pid")
    read -r _ _ addr < "$fifo"
    rm -f "$fifo"
    target=(--floor --url "http://$addr" --pid "$relay_pid")
}
stop() { kill -TERM "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null || true; }

run() { "$bench" "$@" >> "$out"; }

# Fixed loads, every server at each, the repetitions interleaved (rep 1 of everything, then
# rep 2, ...) so that a slow minute of the machine spreads over all servers instead of
# landing on one. The report takes medians over the runs that count (nothing lost, the tool
# kept up) and shows the spread.
#   100 × 1000  batchable: each socket gets a message every millisecond;
#   1000 × 100  one write per delivery (a message per socket every 10 ms);
#   1000 × 50   the same shape at a load the Node server sustains on this machine.
echo "== fixed loads ($repeats interleaved repetitions)" >&2
for rep in $(seq "$repeats"); do
    for load in "100 1000" "1000 100" "1000 50"; do
        set -- $load
        fixed=(--receivers "$1" --rate "$2" --duration "$duration" --warmup "$warmup"
            --receiver-threads 2)
        echo "-- repetition $rep, $1 receivers × $2 msg/s" >&2
        start_floor
        run fanout "${target[@]}" "${fixed[@]}"
        stop
        start_peer
        run fanout "${target[@]}" "${fixed[@]}"
        stop
        for transport in ws sse longpoll shortpoll stream webtransport; do
            start_relay
            run fanout "${target[@]}" --transport "$transport" "${fixed[@]}"
            stop
        done
    done
done

echo "== ramps (100 receivers, p99 ≤ 100 ms)" >&2
for transport in ws sse longpoll stream webtransport; do
    start_relay
    run ramp "${target[@]}" --transport "$transport" --receivers 100 --rate 200 --factor 1.5 \
        --receiver-threads 2 --max-steps 12 --max-p99-ms 100 --duration "$ramp_duration" --warmup 1
    stop
done
for start in start_peer start_floor; do
    $start
    run ramp "${target[@]}" --receivers 100 --rate 200 --factor 1.5 --receiver-threads 2 \
        --max-steps 12 --max-p99-ms 100 \
        --duration "$ramp_duration" --warmup 1
    stop
done

echo "== idle connections ($idle)" >&2
for transport in ws sse longpoll stream webtransport; do
    start_relay
    run idle "${target[@]}" --transport "$transport" --connections "$idle" --settle 3
    stop
done
start_peer
run idle "${target[@]}" --connections "$idle" --settle 3
stop

python3 scripts/bench-report.py "$out" target/page-size.txt
