#!/usr/bin/env bash
# Prepare a fresh Debian machine for Berth: Python dependencies, a running Docker
# engine, and local example images (no registry needed). Idempotent: every step
# checks whether it is already done, so the quickstart, the test command and CI
# can all call it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${BERTH_VENV:-$ROOT/.venv}
log() { printf '[setup] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. A Docker engine. Use the one DOCKER_HOST points at if it answers; otherwise
#    install Debian's docker.io and start dockerd in the background.
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then apt_install docker.io; fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/berth-dockerd.log)"
    setsid dockerd >/var/log/berth-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up"; tail -20 /var/log/berth-dockerd.log >&2; exit 1; }
  fi
fi

# 2. Local example images built from Debian's busybox-static: no registry involved.
#    berth-example/busybox:1 and :2 are the same rootfs under two tags, so tests can
#    change a deployment's image without a registry.
IMAGE_VERSION=2  # bump when the rootfs below changes
if [ "$(docker image inspect -f '{{index .Config.Labels "io.berth.example-version"}}' berth-example/busybox:1 2>/dev/null)" != "$IMAGE_VERSION" ]; then
  apt_install busybox-static
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh ash cat echo env false hostname httpd id kill ls mkdir nc ps rm sleep test true wget; do
    ln -s busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
  echo 'root:x:0:' > "$rootfs/etc/group"
  echo '<h1>hello from berth</h1>' > "$rootfs/www/index.html"
  # PID 1 gets no default signal handlers, so httpd alone would ignore SIGTERM and every
  # stop would wait for the kill timeout: a tiny init that exits on TERM.
  cat > "$rootfs/bin/serve" <<'SERVE'
#!/bin/sh
trap 'kill $child 2>/dev/null; exit 0' TERM INT
httpd -f -p "${PORT:-8080}" -h /www &
child=$!
wait $child
SERVE
  chmod 755 "$rootfs/bin/serve"
  log "importing berth-example/busybox:1"
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/bin' -c 'WORKDIR /' -c "LABEL io.berth.example-version=$IMAGE_VERSION" \
    -c 'CMD ["/bin/serve"]' \
    - berth-example/busybox:1 >/dev/null
fi
docker tag berth-example/busybox:1 berth-example/busybox:2

# Deploying from source runs `git` (the tests also serve repositories with `git daemon`).
command -v git >/dev/null 2>&1 || apt_install git

# The reverse proxy: HAProxy from Debian (started in step 5, once Berth can write its
# configuration). Tests and benchmarks start private ones on ports of their own.
command -v haproxy >/dev/null 2>&1 || apt_install haproxy
# The image registry (Debian's docker-registry, the distribution registry v2): started in
# step 6. Builds are pushed there when BERTH_REGISTRY names it; the swarm tests start their own.
command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
# An ACME test server (pebble, with its mock DNS) for the HTTPS tests: started by them only.
command -v pebble >/dev/null 2>&1 || apt_install pebble
# Real HTTP clients for `berth bench run clients` (bounded runs on loopback only).
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v hey >/dev/null 2>&1 || apt_install hey
command -v curl >/dev/null 2>&1 || apt_install curl

# The fault tests make a bridge for a private Docker engine with `ip` (iproute2).
command -v ip >/dev/null 2>&1 || apt_install iproute2

# 3. Prometheus (server and promtool) from Debian, for the alert-rule tests and the
#    end-to-end scrape test. Nothing is started here; the tests run their own server.
command -v promtool >/dev/null 2>&1 || apt_install prometheus
# Debian's Postgres 15 server binaries, for the failover tests (a primary and a streaming
# standby of their own on loopback ports; Berth's own default stays the embedded server).
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_install postgresql-15

# The dashboard's tests drive Debian's Chromium headless through its chromedriver (Selenium
# is pointed at both: no browser is downloaded).
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v chromedriver >/dev/null 2>&1 || apt_install chromium-driver

# The image tests build the Dockerfile FROM a Debian base image made here from Debian's
# packages (debootstrap, `docker import`; once, then reused) and run deploy/docker-compose.yml
# with Debian's docker-compose.
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
if ! docker image inspect berth-base/debian:bookworm >/dev/null 2>&1; then
  log "making the Debian base image berth-base/debian:bookworm (debootstrap; a few minutes, once)"
  bash deploy/build-image.sh --base-only
fi

# 4. Python: a virtualenv with Berth and its test dependencies.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.berth-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Berth and its dependencies into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
# 5. Berth's proxy: HAProxy with the configuration `berth proxy-config` writes (a listener on
#    BERTH_PROXY_HTTP_ADDR, default 127.0.0.1:8080; the admin socket /run/berth/proxy.sock;
#    empty route maps), started if nothing answers on the socket. Berth programs the routes
#    at run time. deploy/berth-proxy.service does the same under systemd.
proxy_socket=/run/berth/proxy.sock
if ! "$VENV/bin/python" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$proxy_socket" 2>/dev/null; then
  mkdir -p /etc/berth /run/berth
  "$VENV/bin/berth" proxy-config --maps /var/lib/berth/proxy -o /etc/berth/haproxy.cfg
  log "starting haproxy (admin socket $proxy_socket, log: /var/log/berth-proxy.log)"
  setsid haproxy -db -f /etc/berth/haproxy.cfg >/var/log/berth-proxy.log 2>&1 < /dev/null &
  for _ in $(seq 1 40); do [ -S "$proxy_socket" ] && break; sleep 0.25; done
  [ -S "$proxy_socket" ] || { log "haproxy did not come up"; tail -20 /var/log/berth-proxy.log >&2; exit 1; }
fi

# 6. The image registry, with the configuration `berth registry-config` writes: listening on
#    BERTH_REGISTRY (default 127.0.0.1:5000: loopback, no authentication), storage in
#    /var/lib/berth/registry. Started if nothing answers there. The nodes of a swarm pull
#    from it at the address BERTH_REGISTRY names: set it to an address they reach, and make
#    them trust it (TLS, or Docker's insecure-registries for a private network).
registry_addr="${BERTH_REGISTRY:-127.0.0.1:5000}"
if ! "$VENV/bin/python" -c "import socket,sys; h,_,p=sys.argv[1].rpartition(':'); socket.create_connection((h,int(p)),2)" "$registry_addr" 2>/dev/null; then
  mkdir -p /etc/berth /var/lib/berth/registry
  "$VENV/bin/berth" registry-config --root /var/lib/berth/registry -o /etc/berth/registry.yml
  log "starting docker-registry on $registry_addr (log: /var/log/berth-registry.log)"
  setsid docker-registry serve /etc/berth/registry.yml >/var/log/berth-registry.log 2>&1 < /dev/null &
  for _ in $(seq 1 40); do
    "$VENV/bin/python" -c "import socket,sys; h,_,p=sys.argv[1].rpartition(':'); socket.create_connection((h,int(p)),2)" "$registry_addr" 2>/dev/null && break
    sleep 0.25
  done
fi

log "ready: docker $(docker version --format '{{.Server.Version}}'), $("$VENV/bin/python" --version)"
