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

FROM rust:1.95-bookworm AS build
# Node runs wasm-opt (npm binaryen); musl-tools links the static relay. Debian's point
# releases replace these versions, so pinning them would break the build, not fix it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh \
 && ./scripts/build-page.sh \
 && ./scripts/stage-image.sh /out

FROM scratch AS prebuilt
COPY target/image/ /out/

# hadolint ignore=DL3006
FROM ${ARTIFACTS} AS artifacts

FROM scratch
COPY --from=artifacts /out/relay /relay
COPY --from=artifacts /out/dist /dist
# Every setting is a RELAY_* variable (see README); these make the image serve the page on
# all of the container's interfaces, and /metrics on an internal port of its own (9100, not
# exposed: publish it only to the monitoring network; the public port answers 404 for it).
ENV RELAY_ADDR=0.0.0.0:3000 \
    RELAY_STATIC_DIR=/dist \
    RELAY_METRICS_ADDR=0.0.0.0:9100
USER 10001:10001
EXPOSE 3000
# The relay drains its connections on SIGTERM within RELAY_SHUTDOWN_DEADLINE (10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/relay", "healthcheck"]
ENTRYPOINT ["/relay"]
