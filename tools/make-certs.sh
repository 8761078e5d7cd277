#!/usr/bin/env bash
# Makes, for a local try-out of mTLS, a CA, a server certificate and two client
# certificates whose Organization names their role (O=admin, O=reader):
#   bash tools/make-certs.sh [DIR] [SERVER_SAN]
#   DIR defaults to ./certs; SERVER_SAN to DNS:localhost,IP:127.0.0.1
# Then: AGENT_TLS_CERT=DIR/server.crt AGENT_TLS_KEY=DIR/server.key AGENT_TLS_CLIENT_CA=DIR/ca.crt
# Keys are written 0600. Never commit them; make your own for anything real.
set -euo pipefail
DIR=${1:-./certs}
SAN=${2:-DNS:localhost,IP:127.0.0.1}
umask 077
mkdir -p "$DIR"
cd "$DIR"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
sign() { # name subject extensions
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
key ca
openssl req -x509 -new -key ca.key -subj "/CN=agent local CA" -days 365 -sha256 -out ca.crt
sign server "/CN=agent" "subjectAltName=$SAN
extendedKeyUsage=serverAuth"
sign admin "/O=admin/CN=admin" "extendedKeyUsage=clientAuth"
sign reader "/O=reader/CN=reader" "extendedKeyUsage=clientAuth"
rm -f ca.srl
echo "make-certs: wrote ca, server, admin and reader (.crt, .key) to $(pwd)" >&2
