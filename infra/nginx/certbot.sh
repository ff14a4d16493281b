#!/bin/sh
# Entrypoint of the certbot service (docker-compose.yml). Replaces nginx's self-signed placeholder
# with a Let's Encrypt certificate (webroot challenge served by nginx), then renews it twice a day.
# nginx notices the new file and reloads (40-slm-reload-on-new-cert.sh).
# Without CERTBOT_EMAIL, or when DOMAIN is an IP address, it keeps the placeholder.
# CERTBOT_STAGING=1 uses Let's Encrypt's staging server (no rate limits, untrusted certificates).
set -u
: "${DOMAIN:?set DOMAIN}"
# PID 1 of its container: a shell there ignores SIGTERM unless it traps it, and only runs the trap once
# its foreground command ends, so every wait is a background sleep that `wait` leaves at once on a signal.
trap 'exit 0' TERM INT
pause() {
    sleep "$1" &
    wait $!
}
live="/etc/letsencrypt/live/$DOMAIN"
webroot=/var/www/certbot
staging=""
[ "${CERTBOT_STAGING:-0}" = 1 ] && staging="--staging"

issue() {
    # certbot refuses to write into a live directory it did not create: move the placeholder away
    # and put it back if issuing fails, so nginx always finds a certificate on restart.
    rm -rf "$live.placeholder" && mv "$live" "$live.placeholder"
    # shellcheck disable=SC2086  # $staging is one optional flag
    if certbot certonly --webroot -w "$webroot" -d "$DOMAIN" --email "$CERTBOT_EMAIL" \
        --agree-tos --non-interactive --no-eff-email --keep-until-expiring $staging; then
        rm -rf "$live.placeholder"
        echo "slm: certificate issued for $DOMAIN"
    else
        rm -rf "$live" && mv "$live.placeholder" "$live"
        echo "slm: could not issue a certificate for $DOMAIN (does its DNS point here?); retrying in an hour"
        return 1
    fi
}

case "$DOMAIN" in
    *[!0-9.]*) is_ip=no ;;
    *) is_ip=yes ;;
esac
if [ -z "${CERTBOT_EMAIL:-}" ] || [ "$is_ip" = yes ]; then
    echo "slm: CERTBOT_EMAIL unset or DOMAIN is an IP address: keeping the self-signed certificate"
    while :; do pause 86400; done
fi

while :; do
    if [ -f "$live/.placeholder" ]; then
        issue || { pause 3600; continue; }
    fi
    certbot renew --webroot -w "$webroot" --quiet
    pause 43200
done
