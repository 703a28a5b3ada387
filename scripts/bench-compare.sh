#!/usr/bin/env bash
# Compares two relay binaries side by side, in one run on this machine: CPU per delivery and
# latency at fixed loads (interleaved repetitions, a fresh server each), and memory per idle
# connection. For checking that a change costs nothing where it should not.
# Usage: ./scripts/bench-compare.sh OLD_RELAY NEW_RELAY [REPEATS]   (release builds)
# Output: JSON lines on stdout (one per measurement, with "binary" added), summaries on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export_load_test_budgets
export RELAY_MAX_CONNECTIONS=30000 RUST_LOG=error RELAY_STATIC_DIR=/nonexistent

old=${1:?usage: bench-compare.sh OLD_RELAY NEW_RELAY [REPEATS]}
new=${2:?usage: bench-compare.sh OLD_RELAY NEW_RELAY [REPEATS]}
repeats=${3:-2}
cargo build --release --locked -p relay-bench >/dev/null 2>&1
bench=target/release/relay-bench
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT

# run LABEL BINARY MODE ARGS...: one measurement on a fresh server.
run() {
    local label=$1 binary=$2
    shift 2
    local port
    port=$(free_port)
    RELAY_ADDR="127.0.0.1:$port" "$binary" & pid=$!
    wait_for "http://127.0.0.1:$port/healthz"
    "$bench" "$@" --url "http://127.0.0.1:$port" --pid "$pid" \
        | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);r.binary=process.argv[1];console.log(JSON.stringify(r));})' "$label"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

for _ in $(seq "$repeats"); do
    for transport in ws sse longpoll; do
        for side in old new; do
            binary=$old; [ "$side" = new ] && binary=$new
            run "$side" "$binary" fanout --transport "$transport" --receivers 100 --rate 1000 \
                --duration 8 --warmup 2
        done
    done
done
for transport in ws sse longpoll; do
    for side in old new; do
        binary=$old; [ "$side" = new ] && binary=$new
        run "$side" "$binary" idle --transport "$transport" --connections 10000 --settle 3
    done
done
