#!/bin/sh
# Runs at nginx start (the image's /docker-entrypoint.d/): leaves a background loop that reloads
# nginx whenever the certificate file changes (first issue, renewals), checked every minute.
set -eu
: "${CERT_DIR:?set CERT_DIR}"

watch_certificate() {
    last=""
    while sleep 60; do
        now=$(stat -L -c %Y "$CERT_DIR/fullchain.pem" 2>/dev/null || echo missing)
        if [ -n "$last" ] && [ "$now" != "$last" ] && [ "$now" != missing ]; then
            echo "slm: certificate changed, reloading nginx"
            nginx -s reload || true
        fi
        last=$now
    done
}
watch_certificate &
