#!/usr/bin/env bash
# What sharing rooms through Redis costs, measured in one run on this machine: the same
# fan-out (WebSocket at two shapes, long polling at one) against (1) one relay with the in-memory bus, (2) one relay on Redis, (3) two relays
# on one Redis, senders on one and receivers on the other. CPU is the relays' and Redis's
# together. Writes docs/bench/redis.jsonl and prints a Markdown table (docs/SCALING.md).
#   ./scripts/bench-redis.sh           (about 5 minutes)
#   QUICK=1 ./scripts/bench-redis.sh   (shorter runs, for trying the script itself)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export_load_test_budgets

./scripts/setup.sh --redis >&2
cargo build --release --locked -q -p relay -p relay-bench

bench=target/release/relay-bench
out=docs/bench/redis.jsonl
mkdir -p docs/bench
: > "$out"
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT

if [ -n "${QUICK:-}" ]; then duration=3; warmup=1; else duration=8; warmup=2; fi

start_redis() {
    redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$data" \
        >/dev/null & redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}
# start_relay [REDIS_URL]: sets relay_url and relay_pid.
start_relay() {
    local port
    port=$(free_port)
    RELAY_ADDR="127.0.0.1:$port" \
    RELAY_MAX_CONNECTIONS=30000 RELAY_REDIS_URL="${1:-}" RUST_LOG=warn \
        target/release/relay & relay_pid=$!
    pids+=("$relay_pid")
    relay_url="http://127.0.0.1:$port"
    wait_for "$relay_url/readyz"
}
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }

# label, then relay-bench fanout arguments
run() {
    local label=$1; shift
    echo "== $label: $*" >&2
    "$bench" fanout "$@" --duration "$duration" --warmup "$warmup" \
        | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); r.setup = process.argv[1]; console.log(JSON.stringify(r))' "$label" \
        >> "$out"
}

for load in "ws 100 1000" "ws 1000 100" "longpoll 100 1000"; do
    set -- $load
    shape=(--transport "$1" --receivers "$2" --rate "$3")

    start_relay
    run "memory, one relay" --url "$relay_url" --pid "$relay_pid" "${shape[@]}"
    stop_all

    start_redis
    start_relay "redis://127.0.0.1:$redis_port/"
    run "Redis, one relay" --url "$relay_url" --pid "$relay_pid" --pid "$redis_pid" "${shape[@]}"
    stop_all

    start_redis
    start_relay "redis://127.0.0.1:$redis_port/"; a_url=$relay_url; a_pid=$relay_pid
    start_relay "redis://127.0.0.1:$redis_port/"
    run "Redis, two relays" --send-url "$a_url" --url "$relay_url" \
        --pid "$a_pid" --pid "$relay_pid" --pid "$redis_pid" "${shape[@]}"
    stop_all
done

python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| transport | load | setup | delivered/s | p50 ms | p99 ms | CPU µs per delivery | lost | dup | reordered |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    load = f"{r['receivers']} × {r['rate']:g}/s"
    lat = r["latency_ms"]
    cpu = r.get("cpu_us_per_delivery")
    print(f"| {r['transport']} | {load} | {r['setup']} | {r['delivered_per_s']:,.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | "
          f"{'–' if cpu is None else f'{cpu:.2f}'} | {r['lost']} | {r['duplicated']} | {r['out_of_order']} |")
PY
