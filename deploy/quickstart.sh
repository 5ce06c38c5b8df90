#!/usr/bin/env bash
# One command from a fresh Debian machine to Berth converging an example deployment:
# sets up the host (deploy/setup-host.sh), starts `berth run` in the background with its
# embedded Postgres, applies deploy/examples/hello.yaml (an image) and
# deploy/examples/hello-git.yaml (built from a local git repository), and waits until both
# are active.
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

# The second example is built from source: a git repository of deploy/examples/hello-git/.
REPO="$BERTH_DATA_DIR/examples/hello-git"
if [ ! -d "$REPO/.git" ]; then
  mkdir -p "$REPO"
  cp deploy/examples/hello-git/* "$REPO/"
  git -C "$REPO" init -q -b main
  git -C "$REPO" add -A
  git -C "$REPO" -c user.name=quickstart -c user.email=quickstart@berth.local commit -q -m "hello from source"
fi
sed "s#@REPO@#$REPO#" deploy/examples/hello-git.yaml | "$BERTH" apply -f -

converged_all() {
  "$BERTH" get -o json | "$ROOT/.venv/bin/python" -c '
import json, sys
rows = {row["name"]: row for row in json.load(sys.stdin)}
print(all(rows.get(name, {}).get("converged") for name in ("hello", "hello-git")))'
}
echo "[quickstart] waiting for deployment/hello and deployment/hello-git (built from git) to converge"
converged=""
for _ in $(seq 1 240); do
  converged=$(converged_all)
  [ "$converged" = "True" ] && break
  sleep 0.5
done
"$BERTH" get
echo
"$BERTH" builds
echo
docker ps --filter label=io.berth.deployment --format 'table {{.Names}}\t{{.Image}}\t{{.Status}}\t{{.Ports}}'
if [ "$converged" != "True" ]; then
  echo "[quickstart] not converged; see: $BERTH describe hello-git, $BERTH logs hello-git --build, and $LOG" >&2
  exit 1
fi
replica0() { docker ps -q --filter "label=io.berth.deployment=$1" --filter label=io.berth.replica=0 | head -1; }
port=$(docker port "$(replica0 hello)" 8080/tcp | head -1 | sed 's/.*://')
echo
echo "[quickstart] hello's replica 0 answers on port $port: $("$ROOT/.venv/bin/python" -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode().strip())")"
for _ in $(seq 1 40); do curl -fsS -o /dev/null -H 'Host: hello.localhost' http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.25; done
echo "[quickstart] through the proxy, http://127.0.0.1:8080 with Host: hello.localhost: $(curl -fsS -H 'Host: hello.localhost' http://127.0.0.1:8080/)"
port=$(docker port "$(replica0 hello-git)" 8080/tcp | head -1 | sed 's/.*://')
echo "[quickstart] hello-git's replica 0 (built from $REPO) answers on port $port: $("$ROOT/.venv/bin/python" -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode().splitlines()[0])")"
# The HTTP API and dashboard (every replica serves them on BERTH_API_ADDR, 127.0.0.1:9380):
# a read token for this quickstart, shown once (a rerun revokes the previous one).
"$BERTH" token revoke quickstart >/dev/null 2>&1 || true
TOKEN=$("$BERTH" token create --scope read --name quickstart 2>/dev/null)
for _ in $(seq 1 40); do curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9380/api/v1/deployments 2>/dev/null && break; sleep 0.25; done
summary='import json, sys; print(", ".join("%s %s %s/%s" % (d["name"], d["phase"], d["ready_replicas"], d["desired_replicas"]) for d in json.load(sys.stdin)["items"]))'
echo "[quickstart] the API says: $(curl -fsS -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9380/api/v1/deployments | "$ROOT/.venv/bin/python" -c "$summary")"
cat <<HELP

Berth is running (pid $(cat "$PIDFILE"), log $LOG).
Dashboard: http://127.0.0.1:9380/ (paste this read token, shown once: $TOKEN)
Try:
  $BERTH describe hello
  curl -H 'Host: hello.localhost' http://127.0.0.1:8080/     # through the proxy
  $BERTH rollout status hello --wait; $BERTH rollout history hello
  $BERTH logs hello-git --build              # the build's log (-f follows a running one)
  (cd $REPO && echo '<h1>v2</h1>' > index.html && git -c user.name=me -c user.email=me@example.test commit -qam v2) && $BERTH retry hello-git
  psql "\$($BERTH db-url)" -c "UPDATE deployments SET replicas = 3 WHERE name = 'hello'"
  $BERTH delete hello
Stop it with: kill \$(cat $PIDFILE)
HELP
