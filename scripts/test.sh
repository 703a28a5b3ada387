#!/usr/bin/env bash
# Runs every check: formatting, lints, unit and integration tests, the browser tests against
# the relay serving the release build, and the container image built and run with buildah.
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
echo "== browser tests"
./scripts/build-page.sh
cargo build --locked -p relay
npm run --silent e2e
echo "== load tool smoke runs"
./scripts/bench-smoke.sh
echo "== container image"
./scripts/image-test.sh
