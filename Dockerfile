# One image for the five services; compose picks the entry point per service.
# NODE_IMAGE is any Node 20 image with npm. Where nothing can be pulled,
# tools/node-base-image.sh builds local/node:20 from the host's own node.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY . .
# Use what the host already installed and built when the context has it (no
# registry needed); otherwise install and build here. Then drop dev tools
# (nx, buf, typescript) and sources.
RUN if [ ! -f node_modules/.package-lock.json ]; then npm install --no-audit --no-fund; fi \
 && if [ ! -f apps/daemon/dist/main.js ]; then sh tools/bootstrap.sh; fi \
 && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error \
 && rm -rf e2e bench .ci proto/src proto/agent proto/grpc libs/*/src apps/*/src tools/*/src

FROM ${NODE_IMAGE}
WORKDIR /agent
COPY --from=build /src /agent
ENV NODE_ENV=production AGENT_DATA_DIR=/var/lib/agent
# The token and spool volumes mount on /var/lib/agent/{auth,spool} and start with this owner and mode.
RUN mkdir -p /var/lib/agent/auth /var/lib/agent/spool && chown -R 1000:1000 /var/lib/agent && chmod 700 /var/lib/agent /var/lib/agent/auth /var/lib/agent/spool
# Only the manager needs root (Docker socket, cgroups); compose says so for it.
USER 1000:1000
EXPOSE 50051
CMD ["node", "apps/daemon/dist/main.js"]
