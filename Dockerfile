# syntax=docker/dockerfile:1
# tributary as a container image: `docker build -t tributary .` or `docker compose up`.
# Stage 1 compiles the release binary; librdkafka, zlib and zstd are built from the sources
# bundled with the rdkafka crate, which needs a C/C++ toolchain, make and perl (no system
# librdkafka, OpenSSL or SASL headers).
FROM rust:1.89-slim-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin tributary \
 && cp target/release/tributary /usr/local/bin/tributary

# Stage 2: the binary, CA certificates for TLS to PostgreSQL and registries, the default worker
# config, and a user without privileges. Nothing else: the worker keeps no state on disk.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tributary
COPY --from=builder /usr/local/bin/tributary /usr/local/bin/tributary
COPY config/tributary.toml /etc/tributary/tributary.toml
USER tributary
# Inside a container the APIs must listen on every interface to be reachable through a
# published port; everything else comes from TRIBUTARY_<SECTION>_<KEY> variables.
ENV TRIBUTARY_REST_LISTEN=0.0.0.0:8083 \
    TRIBUTARY_REGISTRY_LISTEN=0.0.0.0:8081
EXPOSE 8083 8081
ENTRYPOINT ["/usr/local/bin/tributary"]
CMD ["serve", "--config", "/etc/tributary/tributary.toml"]
