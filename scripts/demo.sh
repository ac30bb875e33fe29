#!/usr/bin/env bash
# `make demo`: start the orchestrator on the local stack, publish a sample site.created, show the
# result event and the site's page fetched through Traefik. `scripts/demo.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

PIDFILE=${DEMO_PIDFILE:-/run/orchestrator-demo.pid}
LOG=${DEMO_LOG:-/var/log/orchestrator-demo.log}
SITES_ROOT=${ORCHESTRATOR_SITES_ROOT:-/srv/director/sites}
PORT=${TRAEFIK_HTTP_PORT:-8000}
SITE_ID=1
DOMAIN=hi.example.com
PY=.venv/bin/python

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-}" = "stop" ]; then
  if running; then
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 1 60); do running || break; sleep 0.5; done
    echo "demo orchestrator stopped"
  fi
  rm -f "$PIDFILE"
  exit 0
fi

if running; then
  echo "==> orchestrator already running (pid $(cat "$PIDFILE"), log $LOG)"
else
  echo "==> starting the orchestrator (log: $LOG)"
  # The default images as scripts/stack-up.sh pushed and pinned them (by digest).
  set -a; . /etc/director-stack/default-images.env; set +a
  nohup "$PY" -m orchestrator run >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    grep -q '"msg": "consuming"' "$LOG" 2>/dev/null && break
    running || { echo "orchestrator exited; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
    sleep 0.5
  done
fi

echo "==> the site owner's files: $SITES_ROOT/site_0001/{run.sh,public/index.html}"
mkdir -p "$SITES_ROOT/site_0001/public" "$SITES_ROOT/site_0001/private"
cat >"$SITES_ROOT/site_0001/public/index.html" <<'HTML'
<!doctype html><title>Hello</title><h1>Hello from site_0001, deployed by an event</h1>
HTML
cat >"$SITES_ROOT/site_0001/run.sh" <<'SH'
#!/bin/sh
echo "serving /site/public on port $PORT"
exec httpd -f -p "$PORT" -h /site/public
SH

echo "==> publishing site.created as Director and waiting for the result event"
"$PY" scripts/demo_publish.py "$SITE_ID" "$DOMAIN"

echo "==> GET http://127.0.0.1:$PORT/ with Host: $DOMAIN (through Traefik)"
for _ in $(seq 1 30); do
  if page=$(curl -fsS -H "Host: $DOMAIN" "http://127.0.0.1:$PORT/" 2>/dev/null); then
    echo "$page"
    break
  fi
  sleep 1
done
[ -n "${page:-}" ] || { echo "site not reachable through Traefik" >&2; exit 1; }

echo "==> orchestrator status (what operators see; 'orchestrator reconcile --dry-run' puts back hand edits)"
# Exit 1: it found drift (shown in its table), worth a look but not a failed demo.
"$PY" -m orchestrator status || [ $? -eq 1 ]

cat <<EOF2

The orchestrator keeps running in the background (pid $(cat "$PIDFILE")); its JSON log is $LOG.
Stop it with:  make demo-stop
EOF2
