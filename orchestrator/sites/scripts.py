"""The shell programs that run inside site containers, in one place (POSIX sh; busybox and the
official images' shells both run them).

- `RUN_SCRIPT`: find and run the site's run.sh; without one, idle (healthy) until one appears,
  then exit so that a fresh task starts it.
- `NGINX_START`: write nginx's configuration to tmpfs and run it (static sites).
- `HEALTH_PROBE`: the health check: does $PORT answer HTTP, and has it answered for long enough?

Both entry programs supervise their server: on SIGTERM they keep it serving for $DRAIN_SECONDS
(Traefik stops routing to a task once its desired state is shutdown, at its next refresh), then
pass the signal on; and they exit with the server's own status, so a crash is a failed task.
"""

from __future__ import annotations

# Files in the container's /tmp (tmpfs) that the probe and the entry programs share.
IDLE_MARK = "/tmp/.orchestrator-idle"
SINCE_MARK = "/tmp/.orchestrator-answering-since"
STABLE_MARK = "/tmp/.orchestrator-stable"

_SUPERVISE = """\
child=""
stopping=""
on_term() {
  stopping=1
  if [ -n "$child" ]; then
    sleep "${DRAIN_SECONDS:-0}"
    kill -"$STOP_SIGNAL" "$child" 2>/dev/null
  fi
}
trap on_term TERM INT
supervise() {
  "$@" &
  child=$!
  wait "$child"
  status=$?
  # `wait` returns early when a signal's trap ran; wait again until the server really exited.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
  done
  exit "$status"
}
"""

RUN_SCRIPT = f"""\
STOP_SIGNAL=TERM
{_SUPERVISE}
find_run() {{
  for f in /site/run.sh /site/private/run.sh /site/public/run.sh; do
    if [ -f "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}}
if ! script=$(find_run); then
  echo "orchestrator: no run.sh in /site, /site/private or /site/public: idle until one is added" >&2
  : > {IDLE_MARK}
  while [ -z "$stopping" ] && ! find_run >/dev/null; do
    sleep 2 & wait $!
  done
  # A fresh task starts it, with the whole start period for its health checks.
  [ -z "$stopping" ] && echo "orchestrator: run.sh appeared; restarting to start it" >&2
  exit 0
fi
echo "orchestrator: starting $script"
cd /site/public
if [ -x "$script" ]; then supervise "$script"; else supervise /bin/sh "$script"; fi
"""

NGINX_START = f"""\
STOP_SIGNAL=QUIT
{_SUPERVISE}
printf "%s" "$NGINX_CONF" > /tmp/nginx.conf
supervise nginx -e stderr -c /tmp/nginx.conf -g "daemon off;"
"""

# Any HTTP answer on $PORT counts (a site without an index page answers 404 and is up); no
# answer is not. busybox wget prints the status line with -S even for errors; its -T crashes
# in some builds, so the health check's own timeout bounds it. Until the server has answered
# every probe for $STABLE_SECONDS it is not healthy yet (a crash inside that window is caught
# before the task takes traffic); after that, plain probes.
HEALTH_PROBE = f"""\
[ -e {IDLE_MARK} ] && exit 0
u="http://127.0.0.1:$PORT/"
if command -v wget >/dev/null 2>&1; then
  wget -q -S -O /dev/null "$u" 2>&1 | grep -q "HTTP/" || {{ rm -f {SINCE_MARK}; exit 1; }}
elif command -v curl >/dev/null 2>&1; then
  curl -s -o /dev/null "$u" || {{ rm -f {SINCE_MARK}; exit 1; }}
fi
[ -e {STABLE_MARK} ] && exit 0
now=$(date +%s) || exit 0
[ -e {SINCE_MARK} ] || echo "$now" > {SINCE_MARK}
if [ $((now - $(cat {SINCE_MARK}))) -ge "${{STABLE_SECONDS:-0}}" ]; then : > {STABLE_MARK}; exit 0; fi
exit 1
"""
