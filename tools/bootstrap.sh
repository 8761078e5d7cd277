#!/bin/sh
# Installs the node dependencies when they are missing or stale, then builds
# every project (nx: protos first, then libs, then apps; cached).
set -e
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing node dependencies" >&2
  # npm install, not npm ci: the registry reachable here serves only this
  # platform's optional binaries (nx, buf), so the lock has no entries for the
  # others and npm ci refuses it. With the lock present, install keeps its versions.
  npm install --no-audit --no-fund --loglevel=error
fi
NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false npx nx run-many -t build --outputStyle=static >/tmp/agent-build.log 2>&1 || {
  cat /tmp/agent-build.log >&2
  echo "bootstrap: build failed" >&2
  exit 1
}
echo "bootstrap: built" >&2
