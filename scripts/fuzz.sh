#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz with a nightly toolchain) for a while each: 30 s
# in the test command, 600 s for the recorded runs in docs/RELIABILITY.md. Any crash, hang or
# failed check stops it with the reproducing input in fuzz/artifacts/TARGET/.
#   ./scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --fuzz >/dev/null
seconds=${1:-30}
cd fuzz
cargo +nightly fuzz build
# Listed first, so that a failing or empty list fails the script instead of running nothing.
targets=$(cargo +nightly fuzz list)
[ -n "$targets" ] || { echo "fuzz: no targets" >&2; exit 1; }
for target in $targets; do
    echo "fuzz: $target for $seconds s"
    # -timeout: an input that takes over 10 s is a hang; -rss_limit_mb: one that needs 2 GiB
    # is a leak. The summary line (runs, coverage) is all that is kept of libFuzzer's output.
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==|SUMMARY)|Test unit written' || {
        echo "fuzz: $target failed; see fuzz/artifacts/$target/" >&2
        exit 1
    }
done
