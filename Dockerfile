# syntax=docker/dockerfile:1
# Two-stage build of the operator image: the same layout `cargo xtask image` writes as an OCI archive
# offline (xtask/src/image.rs; a unit test keeps this file and that layout in step): a static musl
# eso-operator, a CA bundle and a nonroot user (65532) on an empty base.
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo xtask image --rootfs /rootfs

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/eso-operator"]
