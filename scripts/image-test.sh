#!/usr/bin/env bash
# Builds the container image with buildah from host-built artifacts (the Dockerfile's
# ARTIFACTS=prebuilt path: this machine cannot pull base images), runs it, and checks it
# from outside: its configuration, health check, page, WebSocket, SSE and WebTransport,
# graceful stop.
# Needs: buildah, hadolint (scripts/setup.sh --container), a built page (build-page.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

buildah="buildah --storage-driver vfs"
image=localhost/chat-transports:ci

echo "== hadolint"
hadolint=$(command -v hadolint || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint")
"$hadolint" Dockerfile

echo "== build the image"
./scripts/stage-image.sh
$buildah bud --quiet --isolation chroot --format docker --build-arg ARTIFACTS=prebuilt \
    -f Dockerfile -t "$image" . >/dev/null

echo "== check its configuration"
$buildah inspect --type image "$image" | node -e '
  const config = JSON.parse(require("fs").readFileSync(0, "utf8")).Docker.config;
  const want = (ok, what) => { if (!ok) { console.error("image config: " + what); process.exit(1); } };
  want(config.Env.includes("RELAY_ADDR=0.0.0.0:3000"), "listens on 0.0.0.0:3000");
  want(config.Env.includes("RELAY_METRICS_ADDR=0.0.0.0:9100"), "serves /metrics on an internal port");
  want(!("9100/tcp" in (config.ExposedPorts ?? {})), "does not expose the metrics port");
  want(config.User === "10001:10001", "runs as a non-root user");
  want("3000/tcp" in (config.ExposedPorts ?? {}), "exposes 3000");
  want(config.Env.includes("RELAY_WT_ADDR=0.0.0.0:4433"), "serves WebTransport on 0.0.0.0:4433");
  want("4433/udp" in (config.ExposedPorts ?? {}), "exposes 4433/udp");
  want(JSON.stringify(config.Healthcheck?.Test) === JSON.stringify(["CMD", "/relay", "healthcheck"]), "has a shell-free HEALTHCHECK");
  want(config.StopSignal === "SIGTERM", "stops on SIGTERM");
  console.log("image config: ok");
'

container=$($buildah from "$image")
relay_pid=""
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    $buildah rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# buildah run shares the host's network: give the relay free loopback ports.
port=$(free_port)
metrics_port=$(free_port)
echo "== run it on 127.0.0.1:$port (metrics on $metrics_port, WebTransport on any free UDP port)"
relay_log=$(mktemp)
$buildah run --isolation chroot --env "RELAY_ADDR=127.0.0.1:$port" \
    --env "RELAY_METRICS_ADDR=127.0.0.1:$metrics_port" \
    --env "RELAY_WT_ADDR=127.0.0.1:0" "$container" -- /relay \
    >"$relay_log" 2>&1 &
runner=$!
wait_for "http://127.0.0.1:$port/healthz" || true
relay_pid=$(pgrep -f -n '^/relay$' || true)
[ -n "$relay_pid" ] || { echo "the relay did not start in the container" >&2; exit 1; }

echo "== the image's own health check, inside the container"
$buildah run --isolation chroot --env "RELAY_ADDR=127.0.0.1:$port" "$container" -- /relay healthcheck

echo "== the page, WebSocket and SSE through the container"
BASE_URL="http://127.0.0.1:$port" METRICS_URL="http://127.0.0.1:$metrics_port/metrics" \
    node --test e2e/container.check.mjs

echo "== WebTransport through the container's UDP port (relay-bench's client, the certificate by hash)"
cargo build --locked -q -p relay-bench
target/debug/relay-bench fanout --url "http://127.0.0.1:$port" --pid "$relay_pid" --room image-wt \
    --transport webtransport --receivers 2 --senders 1 --rate 20 --duration 1 --warmup 0.5 \
    | node -e '
      const r = JSON.parse(require("fs").readFileSync(0, "utf8").trim().split("\n").pop());
      if (!(r.sent > 0 && r.delivered === 2 * r.sent) || r.lost || r.duplicated || r.out_of_order) {
        console.error("WebTransport through the container failed:", JSON.stringify(r)); process.exit(1);
      }
      console.log(`webtransport: ${r.delivered} deliveries of ${r.sent} messages, none lost`);
    '

echo "== graceful stop on SIGTERM"
started=$(date +%s)
kill -TERM "$relay_pid"
# The relay is not our child (buildah's runtime is its parent), so its exit is watched with
# `kill -0`, bounded: a relay that ignores SIGTERM fails here instead of hanging the script.
for _ in $(seq 1 150); do
    kill -0 "$relay_pid" 2>/dev/null || break
    sleep 0.1
done
elapsed=$(( $(date +%s) - started ))
if kill -0 "$relay_pid" 2>/dev/null; then
    echo "the relay is still running ${elapsed}s after SIGTERM" >&2
    exit 1
fi
relay_pid=""
# Its exit status is out of reach for the same reason; a clean exit is the one that logs
# "stopped" (a crash or a kill does not). The log also holds buildah's own output, so the
# line is looked for anywhere in it.
if ! grep -q 'relay: stopped$' "$relay_log" || grep -q 'panicked' "$relay_log"; then
    echo "the relay did not stop cleanly; its log ends with:" >&2
    tail -n 20 "$relay_log" >&2
    exit 1
fi
[ "$elapsed" -le 10 ] || { echo "stopping took ${elapsed}s" >&2; exit 1; }
echo "stopped cleanly in ${elapsed}s"
# buildah 1.28 itself may crash after its child exits on a signal, so its status is not
# checked; it is given a bounded time to go, then killed.
for _ in $(seq 1 50); do
    kill -0 "$runner" 2>/dev/null || break
    sleep 0.1
done
kill "$runner" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
$buildah rmi "$image" >/dev/null 2>&1 || true
