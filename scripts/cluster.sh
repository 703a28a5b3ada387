#!/usr/bin/env bash
# Runs two relays sharing rooms through a local Redis, as behind a load balancer:
#   http://127.0.0.1:3000 and http://127.0.0.1:3001 (chat from one, read on the other).
# Redis keeps an append-only file in a temporary directory, so restarting a relay (or Redis)
# keeps the rooms. Ctrl-C stops all three.
# Usage: ./scripts/cluster.sh   (RELAY_PORTS="3000 3001" and RELAY_* settings apply)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

./scripts/setup.sh --redis
./scripts/build-page.sh
cargo build --release --locked -p relay

data=$(mktemp -d)
pids=()
stop() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT TERM

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly yes --dir "$data" \
    >"$data/redis.log" &
pids+=($!)
export RELAY_REDIS_URL="redis://127.0.0.1:$redis_port/"

for port in ${RELAY_PORTS:-3000 3001}; do
    RELAY_ADDR="127.0.0.1:$port" target/release/relay &
    pids+=($!)
done
for port in ${RELAY_PORTS:-3000 3001}; do
    wait_for "http://127.0.0.1:$port/readyz"
done
echo
echo "Two relays on one Redis ($RELAY_REDIS_URL):"
for port in ${RELAY_PORTS:-3000 3001}; do
    echo "  http://127.0.0.1:$port"
done
echo "Open one in each tab and chat across them. Ctrl-C stops everything."
wait -n
