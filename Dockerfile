# Production image: compiled server and production dependencies only. Without the dev dependency
# s3rver there is no local mode: the server refuses to start without S3_BUCKET.
# Node 24 on Debian 13 (trixie, glibc 2.41): uWebSockets.js's published binaries need glibc 2.38 or
# later and load here unmodified; the compatibility step (for older glibc) checks that and does nothing.
FROM node:24-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --ignore-scripts --no-audit --no-fund && node scripts/uws-glibc-compat.mjs
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-trixie-slim
ENV NODE_ENV=production \
    PORT=8080 \
    DLQ_DIR=/var/lib/ingest/dlq
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /var/lib/ingest/dlq && chown -R node:node /var/lib/ingest
USER node
# Batches that failed to upload wait here; mount a volume to keep them across containers.
VOLUME ["/var/lib/ingest/dlq"]
# 8080: events (PORT); 8081: /metrics (METRICS_PORT), for Prometheus only, never behind the public load balancer.
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node is PID 1 and handles SIGTERM and SIGINT itself (src/main.ts); it starts no child processes.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
