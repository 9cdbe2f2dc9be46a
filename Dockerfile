# storeflow's image, for docker-compose.yml (docs/DEPLOYING.md). Multi-stage: cargo-chef
# builds the dependencies in a layer of their own, cached until Cargo.toml/Cargo.lock
# change, so a source change rebuilds only storeflow's crates. The runtime image is Debian
# slim with the binary, curl for the health check, and a non-root user.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --features stripe --recipe-path recipe.json --bin storeflow
COPY . .
RUN cargo build --release --locked --features stripe --bin storeflow && cp target/release/storeflow /usr/local/bin/storeflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/storeflow --create-home storeflow \
    && mkdir -p /var/lib/storeflow/data && chown -R storeflow:storeflow /var/lib/storeflow
COPY --from=build /usr/local/bin/storeflow /usr/local/bin/storeflow
USER storeflow
WORKDIR /var/lib/storeflow
ENV STOREFLOW__DATA_DIR=/var/lib/storeflow/data STOREFLOW__LISTEN=0.0.0.0:8080 STOREFLOW__REGISTRY_LISTEN=0.0.0.0:8081
EXPOSE 8080 8081
VOLUME ["/var/lib/storeflow/data"]
# storeflow stops gracefully on SIGTERM (commits, hands partitions back; runtime.shutdown_grace_ms).
STOPSIGNAL SIGTERM
ENTRYPOINT ["storeflow"]
CMD ["run"]
