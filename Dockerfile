# syntax=docker/dockerfile:1
# Multi-stage build: a static (musl) eso-operator on a distroless nonroot base.
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p eso-operator --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/eso-operator /eso-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /eso-operator /eso-operator
USER 65532:65532
ENTRYPOINT ["/eso-operator"]
