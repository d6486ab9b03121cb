#!/bin/bash
# Startup script of a WhatsApp Business API VM (Container-Optimized OS), set as the instance's
# `startup-script` metadata by `provisioner vm`. Runs at every boot: it writes db.env from the
# instance metadata and (re)starts the WhatsApp `coreapp` and `web` containers and the HTTP
# proxy on port 80 that the keepalive talks to.
set -euo pipefail

md() {
  curl -fsS -H "Metadata-Flavor: Google" \
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1"
}

WA_DIR=/mnt/stateful_partition/whatsapp
mkdir -p "$WA_DIR/data" "$WA_DIR/media" "$WA_DIR/logs"
cd "$WA_DIR"

umask 077
cat > db.env <<ENV
WA_DB_ENGINE=PGSQL
WA_DB_HOSTNAME=$(md WA_DB_HOST_NAME)
WA_DB_PORT=5432
WA_DB_USERNAME=$(md WA_DB_USERNAME)
WA_DB_PASSWORD=$(md WA_DB_PASSWORD)
WA_DB_CONNECTION_IDLE_TIMEOUT=180000
ENV
umask 022

VERSION=$(md WA_API_VERSION)
VM_IP_ADDRESS=$(md VM_IP_ADDRESS)

cat > proxy.conf <<'NGINX'
server {
  listen 80;
  location / {
    proxy_pass https://waweb:443;
    proxy_ssl_verify off;
    proxy_read_timeout 120s;
    client_max_body_size 64m;
  }
}
NGINX

docker network inspect whatsapp >/dev/null 2>&1 || docker network create whatsapp
docker rm -f wacore waweb waproxy >/dev/null 2>&1 || true

docker run -d --restart=always --name wacore --network whatsapp \
  --env-file db.env \
  -v "$WA_DIR/data:/usr/local/waent/data" \
  -v "$WA_DIR/media:/usr/local/wamedia" \
  -v "$WA_DIR/logs:/var/log/whatsapp" \
  "docker.whatsapp.biz/coreapp:$VERSION"

docker run -d --restart=always --name waweb --network whatsapp \
  -p 443:443 \
  --env-file db.env \
  -e WACORE_HOSTNAME=wacore \
  -e WEB_EXTERNAL_HOSTNAME="$VM_IP_ADDRESS" \
  -v "$WA_DIR/data:/usr/local/waent/data" \
  -v "$WA_DIR/media:/usr/local/wamedia" \
  -v "$WA_DIR/logs:/var/log/whatsapp" \
  "docker.whatsapp.biz/web:$VERSION"

docker run -d --restart=always --name waproxy --network whatsapp \
  -p 80:80 \
  -v "$WA_DIR/proxy.conf:/etc/nginx/conf.d/default.conf:ro" \
  nginx:1.27-alpine
