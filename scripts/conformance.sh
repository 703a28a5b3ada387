#!/usr/bin/env bash
# The Autobahn WebSocket cases (kosoku) against an echo server built from the relay's own
# WebSocket parts (relay/examples/ws_echo.rs, the same codec, limits and close codes), as in
# docs/RELIABILITY.md. Runs cases 1–7 and 9 without those of 9.* whose messages exceed
# RELAY_MAX_FRAME_BYTES (64 KiB): the relay closes those with 1009 by design. kosoku exits
# non-zero on any failed case, and so does this script.
#   ./scripts/conformance.sh [OUTDIR]      (reports in OUTDIR; a temporary directory by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
./scripts/setup.sh --conformance >/dev/null
out=${1:-$(mktemp -d)}
cargo build --release --locked -q -p relay --example ws_echo
port=$(free_port)
log=$(mktemp)
target/release/examples/ws_echo "127.0.0.1:$port" 2>"$log" & echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; rm -f "$log"' EXIT
# The echo server says where it listens once it does (and nothing else can have the port).
for _ in $(seq 200); do
    grep -q "listening on 127.0.0.1:$port" "$log" && break
    kill -0 "$echo_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
done
grep -q "listening on 127.0.0.1:$port" "$log" || { echo "the echo server did not start" >&2; exit 1; }
# Over 64 KiB: 9.1.2–9.1.6 and 9.2.2–9.2.6 (256 KiB to 16 MiB), and 9.3–9.6 (1–4 MiB,
# fragmented or chopped).
kosoku -p 2 -o "$out" \
    -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '9.*' \
    $(for n in 2 3 4 5 6; do echo "-x 9.1.$n -x 9.2.$n"; done) \
    -x '9.3.*' -x '9.4.*' -x '9.5.*' -x '9.6.*' \
    "127.0.0.1:$port"
