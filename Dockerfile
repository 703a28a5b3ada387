# The relay, serving the page, as a minimal image: a static binary and the page's files on
# `scratch`, run as an unprivileged user.
#
# One recipe, two sources for the artifacts:
#   docker build -t chat .                  compiles page and relay in the `build` stage;
#   buildah bud --build-arg ARTIFACTS=prebuilt ...
#                                           takes them from target/image/ (scripts/image-test.sh
#                                           fills it), for machines that cannot pull base images.
# Both end in the same final stage below.
ARG ARTIFACTS=build

FROM node:22-bookworm-slim AS node

FROM rust:1.95-bookworm AS build
# Node 20 or newer runs the page's build tools (wasm-opt, esbuild); Debian bookworm's own is
# 18, so it comes from the official image.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
# musl-tools links the static relay; brotli compresses the page. Debian's point releases
# replace these versions, so pinning them would break the build, not fix it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools brotli \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# The tools first, in a layer of their own, from the only files that pin them (trunk and
# wasm-bindgen-cli from setup.sh and Cargo.lock, nightly for the page, wasm-opt and esbuild
# from package-lock.json): editing the sources does not reinstall them.
COPY scripts/setup.sh scripts/
COPY Cargo.lock package.json package-lock.json ./
COPY bench/peer/package.json bench/peer/package-lock.json bench/peer/
RUN ./scripts/setup.sh
COPY . .
# The same script as everywhere: Brotli and gzip copies of every page file, served as such.
RUN ./scripts/image-build-stage.sh /out

FROM scratch AS prebuilt
COPY target/image/ /out/

# hadolint ignore=DL3006
FROM ${ARTIFACTS} AS artifacts

FROM scratch
COPY --from=artifacts /out/relay /relay
COPY --from=artifacts /out/dist /dist
# Every setting is a RELAY_* variable (see README); these make the image serve the page on
# all of the container's interfaces, and /metrics on an internal port of its own (9100, not
# exposed: publish it only to the monitoring network; the public port answers 404 for it),
# and WebTransport on UDP 4433 (publish it as 4433/udp, straight to the container: HTTP
# proxies cannot carry it; unset RELAY_WT_ADDR to turn it off).
ENV RELAY_ADDR=0.0.0.0:3000 \
    RELAY_STATIC_DIR=/dist \
    RELAY_METRICS_ADDR=0.0.0.0:9100 \
    RELAY_WT_ADDR=0.0.0.0:4433
USER 10001:10001
EXPOSE 3000 4433/udp
# The relay drains its connections on SIGTERM within RELAY_SHUTDOWN_DEADLINE (10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/relay", "healthcheck"]
ENTRYPOINT ["/relay"]
