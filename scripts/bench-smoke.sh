#!/usr/bin/env bash
# A short, small run of every relay-bench mode, against the relay (each transport) and the
# tutorial's Node server, and across two relays sharing a real Redis: each must deliver
# everything once and in order. Not a timing test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export_load_test_budgets

cargo build --locked -q -p relay -p relay-bench
bench=target/debug/relay-bench
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT


relay_port=$(free_port)
RELAY_ADDR="127.0.0.1:$relay_port" RELAY_WT_ADDR=127.0.0.1:0 RUST_LOG=warn \
    target/debug/relay & pids+=($!)
relay_pid=$!
peer_port=$(free_port)
PORT=$peer_port node bench/peer/server.js >/dev/null & pids+=($!)
peer_pid=$!
wait_for "http://127.0.0.1:$relay_port/healthz"
wait_for "http://127.0.0.1:$peer_port/"

# Fails unless the JSON line on stdin shows a complete, clean delivery.
check() {
    node -e '
      const r = JSON.parse(require("fs").readFileSync(0, "utf8").trim().split("\n").pop());
      const runs = r.mode === "ramp" ? r.steps : [r];
      // A storm: every client got every acknowledged message once, in order (its timing
      // figures are for scripts/storm.sh, not for a smoke run).
      if (r.mode === "storm" && (r.published === 0 || r.lost || r.duplicated || r.reordered)) {
        console.error("storm smoke failed:", JSON.stringify(r)); process.exit(1);
      }
      for (const run of r.mode === "idle" || r.mode === "presence" ? [] : runs) {
        if (run.sent === 0 || run.lost || run.duplicated || run.out_of_order) {
          console.error("bench smoke failed:", JSON.stringify(run)); process.exit(1);
        }
      }
      // Presence: every member was listed, then gone, and nothing moved while they stayed.
      if (r.mode === "presence" && (r.steady_events !== 0 || !(r.join_ms > 0))) {
        console.error("presence smoke failed:", JSON.stringify(r)); process.exit(1);
      }
      // Idle SSE connections cost a fresh relay memory: at least a KiB each (18 KiB
      // measured). A reading of ~0 means RSS was not measured (or not of the relay).
      if (r.mode === "idle" && !(r.bytes_per_connection >= 1024)) {
        console.error("idle: no memory measured:", JSON.stringify(r)); process.exit(1);
      }
    '
}

small=(--receivers 5 --senders 2 --rate 40 --duration 1 --warmup 0.5 --poll-interval-ms 200)
for transport in ws sse longpoll shortpoll stream webtransport; do
    $bench fanout --url "http://127.0.0.1:$relay_port" --pid "$relay_pid" --room "smoke-$transport" \
        --transport "$transport" "${small[@]}" | check
done
$bench fanout --peer --url "http://127.0.0.1:$peer_port" --pid "$peer_pid" "${small[@]}" | check
# The floor program, with the receivers spread over two threads.
floor_out=$(mktemp -u) && mkfifo "$floor_out"
$bench floor --addr 127.0.0.1:0 > "$floor_out" & pids+=($!)
floor_pid=$!
read -r _ _ floor_addr < "$floor_out"
rm -f "$floor_out"
$bench fanout --floor --url "http://$floor_addr" --pid "$floor_pid" --receiver-threads 2 "${small[@]}" | check
# A relay of its own for each transport, so that the connections' memory is not served from
# what earlier runs freed (a second run on the same relay reuses the first one's). (The tool
# exits non-zero if any connection fails to open.)
for transport in sse stream; do
    idle_port=$(free_port)
    RELAY_ADDR="127.0.0.1:$idle_port" RUST_LOG=warn target/debug/relay & pids+=($!)
    idle_pid=$!
    wait_for "http://127.0.0.1:$idle_port/healthz"
    $bench idle --url "http://127.0.0.1:$idle_port" --pid "$idle_pid" --transport "$transport" \
        --connections 50 --settle 0.5 | check
    kill "$idle_pid" 2>/dev/null || true
done
$bench ramp --url "http://127.0.0.1:$relay_port" --pid "$relay_pid" --room smoke-ramp \
    --receivers 5 --rate 20 --factor 2 --max-steps 2 --duration 1 --warmup 0.5 --max-p99-ms 5000 | check
# Two relays on one Redis: senders on one, receivers on the other.
redis_dir=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$redis_dir" \
    >/dev/null & pids+=($!)
redis_pid=$!
relay_urls=()
for _ in 1 2; do
    port=$(free_port)
    RELAY_ADDR="127.0.0.1:$port" RUST_LOG=warn \
    RELAY_REDIS_URL="redis://127.0.0.1:$redis_port/" target/debug/relay & pids+=($!)
    relay_urls+=("http://127.0.0.1:$port")
done
for url in "${relay_urls[@]}"; do wait_for "$url/readyz"; done
for transport in ws sse longpoll; do
    $bench fanout --send-url "${relay_urls[0]}" --url "${relay_urls[1]}" --pid "$redis_pid" \
        --room "smoke-redis-$transport" --transport "$transport" "${small[@]}" | check
done
# A small storm: the tool starts two relays of its own on this Redis, SIGTERMs one under its
# clients and restarts it.
$bench storm --relay-bin target/debug/relay --redis-url "redis://127.0.0.1:$redis_port/" \
    --clients 60 --accept-rate 50 --drain-window 1 --rate 5 | check
# Presence: a small crowd joins, stays and vanishes, in memory and on this Redis (the tool
# starts its relays; it fails unless every relay lists them all, then none).
$bench presence --relay-bin target/debug/relay --members 40 --duration 1 --ttl 1 | check
$bench presence --relay-bin target/debug/relay --redis-url "redis://127.0.0.1:$redis_port/" \
    --members 40 --duration 1 --ttl 1 | check
echo "bench smoke: every mode delivered everything, once, in order (one relay, two on Redis, a storm, presence)"
