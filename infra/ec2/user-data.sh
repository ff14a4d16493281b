#!/bin/bash
# SLM host bootstrap: cloud-init runs this once, as root, on the instance's first boot
# (Amazon Linux 2023). infra/ec2 replaces each @NAME@ with a shell-quoted value. Log: /var/log/slm-bootstrap.log
set -euo pipefail
exec > >(tee -a /var/log/slm-bootstrap.log) 2>&1

REPO_URL=@REPO_URL@
BRANCH=@BRANCH@
DOMAIN=@DOMAIN@
CERTBOT_EMAIL=@CERTBOT_EMAIL@
APP_DIR=/opt/slm
COMPOSE_VERSION=v2.32.4
BUILDX_VERSION=v0.19.3

# Swap: a safety net on a 1 GiB instance (image builds, a burst of streams), used only under pressure.
if ! swapon --show | grep -q /swapfile; then
    dd if=/dev/zero of=/swapfile bs=1M count=2048 status=none
    chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile
    echo "/swapfile none swap defaults 0 0" >> /etc/fstab
fi
echo "vm.swappiness=10" > /etc/sysctl.d/90-slm-swap.conf && sysctl -q -p /etc/sysctl.d/90-slm-swap.conf

dnf install -y docker git openssl
systemctl enable --now docker
usermod -aG docker ec2-user

# Amazon Linux packages no compose or buildx plugin: install Docker's releases, checksums verified.
plugins=/usr/local/lib/docker/cli-plugins
mkdir -p "$plugins"
fetch_plugin() {  # name url
    curl -fsSL -o "/tmp/$1" "$2"
    curl -fsSL -o "/tmp/$1.sha256" "$2.sha256"
    (cd /tmp && echo "$(cut -d' ' -f1 "$1.sha256")  $1" | sha256sum -c -)
    install -m 755 "/tmp/$1" "$plugins/$1"
}
docker compose version >/dev/null 2>&1 || fetch_plugin docker-compose \
    "https://github.com/docker/compose/releases/download/$COMPOSE_VERSION/docker-compose-linux-x86_64"
docker buildx version >/dev/null 2>&1 || fetch_plugin docker-buildx \
    "https://github.com/docker/buildx/releases/download/$BUILDX_VERSION/buildx-$BUILDX_VERSION.linux-amd64"

if [ -z "$REPO_URL" ]; then
    echo "slm: no repository URL given; copy the repository to $APP_DIR and run: docker compose up -d --build"
    exit 0
fi
if [ ! -d "$APP_DIR/.git" ]; then
    git clone --branch "$BRANCH" --depth 1 "$REPO_URL" "$APP_DIR"
fi
cd "$APP_DIR"

# Secrets are made here and never leave the host (user data is readable in the EC2 console).
if [ ! -f .env ]; then
    umask 077
    {
        echo "DOMAIN=$DOMAIN"
        echo "CERTBOT_EMAIL=$CERTBOT_EMAIL"
        echo "CERTBOT_STAGING=0"
        echo "POSTGRES_PASSWORD=$(openssl rand -hex 32)"
        echo "SLM_JWT_SECRET=$(openssl rand -hex 32)"
    } > .env
fi
docker compose up -d --build
echo "slm: stack started; https://$DOMAIN"
