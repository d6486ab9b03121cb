#!/bin/bash
# Startup script of a WhatsApp Business API VM (Container-Optimized OS), set as the instance's
# `startup-script` metadata by `provisioner vm`. Runs at every boot: it writes db.env from the
# instance metadata and (re)starts the WhatsApp `coreapp` and `web` containers and the proxy
# that serves the API on 443 (80 too, for `vm.open_http`; the firewall decides what is
# reachable). The proxy's self-signed certificate is generated once into the boot disk's
# stateful partition and kept: the same after a reset or a container restart, so the
# certificate pinned by the provisioner (and the job's whatsAppTlsFingerprint) stays valid.
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

TLS_DIR="$WA_DIR/proxy-tls"
if [ ! -s "$TLS_DIR/cert.pem" ] || [ ! -s "$TLS_DIR/key.pem" ]; then
  mkdir -p "$TLS_DIR"
  # Container-Optimized OS has no openssl: run it from an image. Written once, never replaced.
  docker run --rm -v "$TLS_DIR:/tls" alpine/openssl req -x509 -newkey rsa:2048 -nodes \
    -days 3650 -subj "/CN=$VM_IP_ADDRESS" -addext "subjectAltName=IP:$VM_IP_ADDRESS" \
    -keyout /tls/key.pem -out /tls/cert.pem
  chmod 600 "$TLS_DIR/key.pem"
fi

cat > proxy.conf <<'NGINX'
server {
  listen 443 ssl;
  listen 80;
  ssl_certificate /etc/nginx/tls/cert.pem;
  ssl_certificate_key /etc/nginx/tls/key.pem;
  location / {
    # The web container's own certificate changes with the container; it is reached on the
    # private docker network only.
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
  --env-file db.env \
  -e WACORE_HOSTNAME=wacore \
  -e WEB_EXTERNAL_HOSTNAME="$VM_IP_ADDRESS" \
  -v "$WA_DIR/data:/usr/local/waent/data" \
  -v "$WA_DIR/media:/usr/local/wamedia" \
  -v "$WA_DIR/logs:/var/log/whatsapp" \
  "docker.whatsapp.biz/web:$VERSION"

docker run -d --restart=always --name waproxy --network whatsapp \
  -p 443:443 -p 80:80 \
  -v "$WA_DIR/proxy.conf:/etc/nginx/conf.d/default.conf:ro" \
  -v "$TLS_DIR:/etc/nginx/tls:ro" \
  nginx:1.27-alpine
