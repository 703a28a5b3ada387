#!/usr/bin/env bash
# What the Dockerfile's `build` stage runs once the tools are installed: the page (release,
# compressed) and the static relay, staged into DIR as the final stage copies them. Run on
# this machine by scripts/build-stage-check.sh, in a fresh clone, since the stage itself
# cannot run here (base images cannot be pulled).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-page.sh
./scripts/stage-image.sh "${1:?usage: $0 DIR}"
