#!/usr/bin/env bash
# Counts the relay's instructions under a fixed, small fan-out load with valgrind's callgrind:
# repeatable figures (unlike CPU time) for comparing transports or a change against its parent.
#   ./scripts/profile.sh ws          → target/profile/callgrind-ws.out and its top functions
#   ./scripts/profile.sh longpoll
#   RELAY_BIN=/path/to/other/relay ./scripts/profile.sh longpoll   (another build, same load)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export_load_test_budgets

transport="${1:?usage: $0 ws|sse|longpoll|shortpoll}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -q -p relay -p relay-bench
mkdir -p target/profile
relay_bin="${RELAY_BIN:-target/release/relay}"
out="target/profile/callgrind-$transport$(echo "${RELAY_BIN:+-$RELAY_BIN}" | tr '/' '_').out"
port=$(free_port)

RELAY_ADDR="127.0.0.1:$port" RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$relay_bin" 2>/dev/null &
relay=$!
trap 'kill $relay 2>/dev/null || true' EXIT
wait_for "http://127.0.0.1:$port/healthz"
target/release/relay-bench fanout --url "http://127.0.0.1:$port" --transport "$transport" \
    --receivers 20 --rate 50 --duration 5 --warmup 1 >/dev/null
kill -TERM $relay
wait $relay || true
callgrind_annotate --threshold=80 "$out" | grep -E 'PROGRAM TOTALS|^ *[0-9,]+ \(' | head -16
