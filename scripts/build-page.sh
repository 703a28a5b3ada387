#!/usr/bin/env bash
# Builds the page (release, optimised) into dist/ and prints its gzipped first-load size.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PWD/node_modules/.bin:$PATH"   # wasm-opt 132 (see Trunk.toml)
export TRUNK_SKIP_VERSION_CHECK=true
trunk build --release

# What a first visit downloads: the HTML, the JS glue, the wasm and the CSS.
total=0
for file in dist/index.html dist/*.js dist/*.wasm dist/*.css; do
    size=$(gzip -9 -c "$file" | wc -c)
    total=$((total + size))
    printf '  %-48s %7d bytes gzipped\n' "$file" "$size"
done
printf 'page first load: %d bytes gzipped (%d KB)\n' "$total" $(((total + 999) / 1000))
