# storeflow in a container, for docker-compose.yml. (Not built on the development machines,
# which have no Docker engine; the same binary is what `cargo build --release` makes.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/storeflow /usr/local/bin/storeflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/storeflow /usr/local/bin/storeflow
WORKDIR /var/lib/storeflow
ENTRYPOINT []
CMD ["storeflow", "run", "--listen", "0.0.0.0:8080"]
