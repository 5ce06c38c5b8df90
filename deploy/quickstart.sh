#!/usr/bin/env bash
# One command from a fresh Debian machine to Berth converging an example deployment:
# sets up the host (deploy/setup-host.sh), starts `berth run` in the background with its
# embedded Postgres, applies deploy/examples/hello.yaml and waits until it is active.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash deploy/setup-host.sh
BERTH="$ROOT/.venv/bin/berth"
export BERTH_DATA_DIR=${BERTH_DATA_DIR:-/var/lib/berth}
LOG=${BERTH_LOG:-/var/log/berth.log}
PIDFILE="$BERTH_DATA_DIR/berth.pid"
mkdir -p "$BERTH_DATA_DIR"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "[quickstart] berth run already running (pid $(cat "$PIDFILE"))"
else
  echo "[quickstart] starting berth run (log: $LOG)"
  BERTH_LOG_FORMAT=json setsid "$BERTH" run >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
fi

for _ in $(seq 1 60); do "$BERTH" get >/dev/null 2>&1 && break; sleep 0.5; done
"$BERTH" apply -f deploy/examples/hello.yaml

echo "[quickstart] waiting for deployment/hello to converge"
converged=""
for _ in $(seq 1 120); do
  converged=$("$BERTH" get hello -o json | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[0]["converged"])')
  [ "$converged" = "True" ] && break
  sleep 0.5
done
"$BERTH" get
echo
docker ps --filter label=io.berth.deployment=hello --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
if [ "$converged" != "True" ]; then
  echo "[quickstart] hello did not converge; see: $BERTH describe hello, and $LOG" >&2
  exit 1
fi
port=$(docker port berth-hello-0 8080/tcp | head -1 | sed 's/.*://')
echo
echo "[quickstart] berth-hello-0 answers on port $port: $("$ROOT/.venv/bin/python" -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode().strip())")"
cat <<HELP

Berth is running (pid $(cat "$PIDFILE"), log $LOG). Try:
  $BERTH describe hello
  psql "\$($BERTH db-url)" -c "UPDATE deployments SET replicas = 3 WHERE name = 'hello'"
  $BERTH delete hello
Stop it with: kill \$(cat $PIDFILE)
HELP
