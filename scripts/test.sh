#!/usr/bin/env bash
# Runs every check: formatting, lints, unit and integration tests, the Autobahn WebSocket
# cases, a short fuzzing run, the browser tests against the relay serving the release build,
# the load tool's smoke runs, and the container image built and run with buildah.
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --browser --container --redis --nginx

echo "== relay modules: no dependency cycles"
python3 scripts/module-cycles.py relay/src
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (native, and the page for wasm32)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== WebSocket conformance: the Autobahn cases (kosoku) against the relay's WebSocket parts"
./scripts/conformance.sh
echo "== fuzzing: every target for 30 s (cargo +nightly fuzz)"
./scripts/fuzz.sh 30
echo "== browser tests"
./scripts/build-page.sh
cargo build --locked -p relay
npm run --silent e2e
echo "== load tool smoke runs"
./scripts/bench-smoke.sh
echo "== the image's build stage, run here in a fresh clone (its base images cannot be pulled)"
./scripts/build-stage-check.sh
echo "== container image"
./scripts/image-test.sh
