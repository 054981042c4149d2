# syntax=docker/dockerfile:1
# The anthropic-wif sidecar: `anthropic-wif proxy` in a minimal, non-root image, for the Kubernetes
# sidecar and sandboxed-agent recipes in docs/proxy.md (deploy/kubernetes/agent-with-proxy.yaml).
#
#   docker build -t anthropic-wif .
#   docker run --rm -e ANTHROPIC_FEDERATION_RULE_ID=… -e ANTHROPIC_ORGANIZATION_ID=… \
#     -e ANTHROPIC_IDENTITY_TOKEN_FILE=/var/run/secrets/anthropic.com/token \
#     -v /path/to/token:/var/run/secrets/anthropic.com/token:ro anthropic-wif
#
# The image holds one binary and the CA certificates; it runs as uid 65532 and needs no writable
# file system (give XDG_CACHE_HOME a writable volume to keep the token cache across restarts).

ARG RUST_VERSION=1.89

# ---- build: the release CLI from this checkout (only the crates it needs) ------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY core core
COPY cli cli
COPY proxy proxy
COPY emulator emulator
COPY bindings-python bindings-python
COPY bindings-node bindings-node
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p anthropic-wif-cli \
    && install -D -m 0755 target/release/anthropic-wif /out/anthropic-wif

# ---- run: distroless (glibc, CA certificates, no shell, no package manager), non-root -------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/anthropic-wif /usr/local/bin/anthropic-wif
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/anthropic-wif/
USER 65532:65532
ENV XDG_CACHE_HOME=/tmp/cache
# The sidecar listens on the pod's loopback: only containers of the same pod can reach it.
ENTRYPOINT ["/usr/local/bin/anthropic-wif"]
CMD ["proxy", "--listen", "127.0.0.1:8787"]
