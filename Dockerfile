# syntax=docker/dockerfile:1
# The feature store service. Build: docker build -t feature-store .
# Run against a PostgreSQL/TimescaleDB: docker run -e DATABASE_URL=postgres://... -p 3000:3000 feature-store
# (see docker-compose.yml). Without DATABASE_URL it starts its embedded PostgreSQL under /app/data.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- dependencies: production packages only, installed exactly from the lock file -------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# the postinstall scripts: the PostgreSQL driver guards (scripts/patch-postgres-driver.mjs); the
# test runner's build (scripts/build-test-runner.mjs) skips itself without devDependencies
COPY scripts ./scripts
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# --- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data
WORKDIR /app
# Code and packages stay owned by root (read-only for the service); only the data directory
# (embedded PostgreSQL, when no DATABASE_URL is given) belongs to the unprivileged user.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY routes ./routes
COPY db ./db
COPY migrations ./migrations
RUN mkdir -p /app/data && chown node:node /app/data

USER node
EXPOSE 3000
VOLUME ["/app/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "--initial-old-space-size=128", "--import", "tsx", "src/server.ts"]
