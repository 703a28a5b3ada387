#!/usr/bin/env bash
# Builds the page (release, optimised, minified) into dist/, writes a Brotli (.br) and a gzip
# (.gz) copy next to every file for the relay to serve by Accept-Encoding, and prints the
# sizes. What a browser really transfers is measured by the browser test
# (e2e/page-load.test.mjs), not here.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PWD/node_modules/.bin:$PATH"   # wasm-opt 132 (see Trunk.toml)
export TRUNK_SKIP_VERSION_CHECK=true
# The page is built with the nightly compiler, rebuilding the standard library so that a panic
# aborts at once: the panic machinery and its message formatting then stay out of the
# download (11 % of the wasm; docs/BENCHMARKS.md). Nothing else uses nightly features.
# PAGE_TOOLCHAIN=stable builds the same page, larger, without it.
if [ "${PAGE_TOOLCHAIN:-nightly}" = nightly ]; then
    export RUSTUP_TOOLCHAIN=nightly
    export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
    export RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=none -Zlocation-detail=none --cfg=web_sys_unstable_apis"
fi
trunk build --release
node scripts/minify-loader.mjs dist

# Compressed once, at the strongest settings: the relay never compresses on the fly.
total_br=0
total_gz=0
printf '  %-44s %8s %8s %8s\n' file bytes gzip brotli
for file in dist/*; do
    case "$file" in *.br|*.gz) continue ;; esac
    gzip -9 -n -k -f "$file"
    brotli -q 11 -k -f "$file"
    raw=$(wc -c < "$file")
    gz=$(wc -c < "$file.gz")
    br=$(wc -c < "$file.br")
    total_gz=$((total_gz + gz))
    total_br=$((total_br + br))
    printf '  %-44s %8d %8d %8d\n' "$file" "$raw" "$gz" "$br"
done
printf 'page files: %d bytes with Brotli, %d with gzip\n' "$total_br" "$total_gz"
