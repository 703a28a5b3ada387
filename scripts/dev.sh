#!/usr/bin/env bash
# The development loop: the relay on :3000 and `trunk serve` on :8080 with live reload,
# proxying the API (WebSockets included) to the relay. Open http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --locked -p relay
# The page's origin (:8080) differs from the relay's, and trunk's proxy forwards it: allow it
# by configuration rather than switching the cross-site check off.
# WebTransport on a local UDP port: the page asks /api/transport-info (proxied) for it.
RELAY_WT_ADDR="${RELAY_WT_ADDR:-127.0.0.1:4433}" \
RELAY_ALLOWED_ORIGINS="${RELAY_ALLOWED_ORIGINS:-http://127.0.0.1:8080}" ./target/debug/relay &
relay=$!
trap 'kill $relay 2>/dev/null' EXIT

export PATH="$PWD/node_modules/.bin:$PATH"
export TRUNK_SKIP_VERSION_CHECK=true
# A dist of its own: this build speaks through the dev proxy and must never be mistaken for
# the release build in dist/ that the relay and the container image serve.
CHAT_WS_PREFIX=/api-ws trunk serve --dist target/dev-dist
