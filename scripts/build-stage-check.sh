#!/usr/bin/env bash
# Exercises the Dockerfile's `build` stage on this machine, which cannot pull its base images:
# in a fresh clone of HEAD, it runs the stage's own commands (scripts/setup.sh, then
# scripts/image-build-stage.sh) and checks what they stage: the static relay, and the page
# with a Brotli and a gzip copy of every file. It builds into target/build-stage/ (kept between
# runs, apart from this checkout's own builds, which it must not stand in for).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/src"
cd "$work/src"
export CARGO_TARGET_DIR="$root/target/build-stage"
# The stage's steps, in its order.
grep -q '^RUN ./scripts/setup.sh$' Dockerfile
grep -q '^RUN ./scripts/image-build-stage.sh /out$' Dockerfile
./scripts/setup.sh >/dev/null
./scripts/image-build-stage.sh "$work/out"
[ -x "$work/out/relay" ] || { echo "no relay staged" >&2; exit 1; }
file "$work/out/relay" | grep -Eq 'static(-pie)? linked|statically linked' || { echo "the relay is not static" >&2; exit 1; }
for f in "$work"/out/dist/*; do
    case "$f" in *.br|*.gz) continue ;; esac
    [ -s "$f.br" ] && [ -s "$f.gz" ] || { echo "no compressed copies of $f" >&2; exit 1; }
done
echo "build stage: ok (relay and page staged from a fresh clone, every page file with .br and .gz)"
