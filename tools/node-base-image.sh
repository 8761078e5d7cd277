#!/usr/bin/env bash
# Builds a Node base image from this host's own node binary, its shared
# libraries, npm and busybox (for sh), without pulling anything. The
# Dockerfile builds on it with --build-arg NODE_IMAGE=local/node:20.
set -euo pipefail
IMAGE=${1:-local/node:20}
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ -z "${REBUILD:-}" ]; then exit 0; fi
NODE=$(readlink -f "$(command -v node)")
BB=$(command -v busybox || echo /bin/busybox)
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/local/bin,usr/local/lib/node_modules,etc,tmp,root,home/node,proc,sys,dev,var/run}
cp "$NODE" "$root/usr/local/bin/node"
for lib in $(ldd "$NODE" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -r "$NPM_DIR" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
cp "$BB" "$root/bin/busybox"
mkdir -p "$root/usr/bin" && ln -s /bin/busybox "$root/usr/bin/env"
for applet in sh ls cat echo mkdir rm cp mv ln env sleep grep sed wget nc id; do ln -s busybox "$root/bin/$applet"; done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000:node:/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
# nobody: what process objects run as by default (AGENT_PROCESS_USER).
printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' > "$root/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ca-certificates.crt" 2>/dev/null || true
chmod 1777 "$root/tmp"
chown 1000:1000 "$root/home/node"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/bin' \
  -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ca-certificates.crt' \
  -c 'CMD ["node"]' - "$IMAGE" >/dev/null
echo "node-base-image: built $IMAGE from $NODE ($(node --version))" >&2
