#!/bin/sh
# Runs at nginx start (the image's /docker-entrypoint.d/). Until certbot has issued the real
# certificate, write a self-signed one where nginx expects it, so nginx can start and serve the
# ACME challenge; certbot.sh replaces it. Needs DOMAIN and CERT_DIR; openssl on PATH.
#   DOMAIN=localhost CERT_DIR=/tmp/certs sh infra/nginx/10-slm-tls-placeholder.sh
set -eu
: "${DOMAIN:?set DOMAIN}"
: "${CERT_DIR:?set CERT_DIR}"

if [ -s "$CERT_DIR/fullchain.pem" ] && [ -s "$CERT_DIR/privkey.pem" ]; then
    exit 0
fi
mkdir -p "$CERT_DIR"
case "$DOMAIN" in
    *[!0-9.]*) san="DNS:$DOMAIN" ;;
    *) san="IP:$DOMAIN" ;;
esac
openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=$san" \
    -keyout "$CERT_DIR/privkey.pem" -out "$CERT_DIR/fullchain.pem" 2>/dev/null
chmod 600 "$CERT_DIR/privkey.pem"
touch "$CERT_DIR/.placeholder"
echo "slm: no certificate for $DOMAIN yet, using a self-signed placeholder in $CERT_DIR"
