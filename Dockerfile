# syntax=docker/dockerfile:1
#
# sidekey container image.
#
#   docker build -t sidekey:0.1.0 .
#   docker run --rm --read-only -v sidekey-ca:/var/lib/sidekey/ca sidekey:0.1.0 check
#   sudo scripts/image/build-and-run.sh   (no Docker engine: buildah builds this file and runs the image, as CI does)
#
# Two stages: `build` compiles TypeScript and bundles it with its dependencies into dist/ (scripts/bundle.mjs),
# and the runtime stage takes only dist/, so no node_modules, compiler, test framework or source file reaches the
# image. What only some configs need (NATS, SigV4, the CA builder) is in dist/chunks/, loaded on first use.

# ---- compile and bundle ----
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# ---- runtime ----
# node:24-bookworm-slim rather than gcr.io/distroless/nodejs24-debian12: the same Debian and Node build as the
# stages above (one base to patch and pin), `node` on PATH so the exec-form ENTRYPOINT below and Kubernetes
# `command:` overrides read the same everywhere, and `kubectl debug --target` finds a familiar userland.
# npm, npx and corepack (all of /usr/local/lib/node_modules) are deleted below, so the only interpreter an attacker
# finds is the node running sidekey.
# To switch to distroless: use that base, keep USER, and write ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli.js"].
FROM node:24-bookworm-slim
# A 4 MiB young generation (V8's default grows to 16 MiB per semi-space): less RSS after load and with idle tunnels
# for 1.02-1.10x the CPU per request. 1 MiB saved a little more at rest but cost 1.23-1.48x the CPU per request and
# a worse p99 under load (docs/performance.md, 'heap' and 'Tail latency'). Override NODE_OPTIONS to trade.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=4 \
    SIDEKEY_CONFIG=/etc/sidekey/sidekey.yaml
WORKDIR /app
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
 && mkdir -p /var/lib/sidekey/ca /var/run/sidekey-ca /etc/sidekey \
 && chown 10001:10001 /var/lib/sidekey/ca /var/run/sidekey-ca \
 && chmod 0700 /var/lib/sidekey/ca
# Root-owned and read-only for the runtime user: sidekey can read its code but never rewrite it.
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
# The default config: the demo tool with the built-in local_jwt issuer and the CA on the volume below.
# Mount your own at /etc/sidekey/sidekey.yaml (a ConfigMap in Kubernetes) or point SIDEKEY_CONFIG elsewhere.
COPY config/examples/container.yaml /etc/sidekey/sidekey.yaml
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# The CA key lives here: give it a volume (a named volume, or an emptyDir with medium Memory). The root
# filesystem can then be read-only. Docker copies this directory's owner (10001) into a new named volume.
VOLUME ["/var/lib/sidekey/ca"]
# 4750 proxy, 4751 admin. Both bind 127.0.0.1 unless the config or --listen/--admin say otherwise.
EXPOSE 4750 4751
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["run"]
