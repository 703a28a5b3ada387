#!/usr/bin/env bash
# Builds the static relay (musl) and puts it with the built page into DIR (default
# target/image): exactly what the Dockerfile's final stage copies. Run build-page.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/image}"
rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
cargo build --release --locked --target x86_64-unknown-linux-musl -p relay
rm -rf "$out"
mkdir -p "$out"
cp "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/relay" "$out/relay"
cp -r dist "$out/dist"
echo "staged: $out (relay $(du -h "$out/relay" | cut -f1), page $(du -sh "$out/dist" | cut -f1))"
