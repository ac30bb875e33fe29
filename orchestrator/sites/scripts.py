"""The shell programs that run inside site containers, in one place (POSIX sh; busybox and the
official images' shells both run them).

- `RUN_SCRIPT`: find and run the site's run.sh; without one, idle (healthy) until one appears,
  then exit so that a fresh task starts it.
- `NGINX_START`: write nginx's configuration to tmpfs and run it (static sites).
- Both first check, on whatever node the task landed, the promises the security docs make of a
  site's container: `no-new-privileges`, and `/site` mounted `nosuid,nodev` (the sites root's own
  mount on that node; read-only for nginx). A node that does not keep one gets no site started: the task exits saying
  which, so the deploy fails (`run_script_failed`) instead of running unprotected.
- `HEALTH_PROBE`: the health check: does $PORT answer HTTP, and has it answered for long enough?
  Once the task is steady, each probe rests for $HEALTH_IDLE_SECONDS inside the container before it
  can pass, whatever the site does there (see below). Where nothing older serves meanwhile
  ($STABLE_GATE=0) it passes at the first answer and watches the window in the background.

Both entry programs supervise their server: on SIGTERM they keep it serving for $DRAIN_SECONDS
(Traefik stops routing to a task once its desired state is shutdown, at its next refresh), then
pass the signal on; and they exit with the server's own status, so a crash is a failed task.
"""

from __future__ import annotations

# Files in the container's /tmp (tmpfs) that the probe and the entry programs share.
IDLE_MARK = "/tmp/.orchestrator-idle"
STABLE_MARK = "/tmp/.orchestrator-stable"
PASSING_MARK = "/tmp/.orchestrator-passing"
SUPERVISOR_MARK = "/tmp/.orchestrator-supervisor"  # the entry program's pid
# How an entry program exits when the probe's watch of the window saw its server miss an answer.
UNSTABLE_EXIT = 199

_PROMISES = """\
refuse() {
  echo "orchestrator: refusing to start the site: $* on this node (see the security docs)" >&2
  exit 78
}
nnp=""
while read -r key value; do [ "$key" = "NoNewPrivs:" ] && nnp=$value; done < /proc/self/status
[ "$nnp" = 1 ] || refuse "containers run without no-new-privileges (the engine's daemon.json)"
opts=""
while read -r _ point _ options _; do [ "$point" = /site ] && opts=$options; done < /proc/mounts
for wanted in $SITE_MOUNT_PROMISES; do
  case ",$opts," in *,"$wanted",*) ;; *) refuse "/site is not mounted $wanted (the sites root's mount)" ;; esac
done
"""

_SUPERVISE = f"""\
child=""
stopping=""
on_term() {{
  stopping=1
  if [ -n "$child" ]; then
    sleep "${{DRAIN_SECONDS:-0}}"
    kill -"$STOP_SIGNAL" "$child" 2>/dev/null
  fi
}}
# The probe's watch of the stability window saw a miss: the server ends now, as a failed task.
on_unstable() {{
  echo "orchestrator: the server stopped answering within its first ${{STABLE_SECONDS:-0}} s" >&2
  [ -n "$child" ] && kill -KILL "$child" 2>/dev/null
  exit {UNSTABLE_EXIT}
}}
trap on_term TERM INT
trap on_unstable USR1
echo $$ > {SUPERVISOR_MARK}
supervise() {{
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
}}
"""

# A site's own code runs on /site: nosuid and nodev, as the sites root's mount gives a writable bind.
RUN_SCRIPT = f"""\
SITE_MOUNT_PROMISES="nosuid nodev"
{_PROMISES}
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
cd /site/public 2>/dev/null || cd /site
if [ -x "$script" ]; then supervise "$script"; else supervise /bin/sh "$script"; fi
"""

# nginx only reads /site: read-only (Docker's read-only remount of a bind drops nosuid and nodev,
# and nothing can be written there for them to matter).
NGINX_START = f"""\
SITE_MOUNT_PROMISES="ro"
{_PROMISES}
STOP_SIGNAL=QUIT
{_SUPERVISE}
printf "%s" "$NGINX_CONF" > /tmp/nginx.conf
supervise nginx -e stderr -c /tmp/nginx.conf -g "daemon off;"
"""

# Any HTTP answer on $PORT counts (a site without an index page answers 404 and is up); no
# answer is not. busybox wget prints the status line with -S even for errors; its -T crashes on a
# refused connection in some builds, so `timeout` bounds each request instead.
#
# A task is healthy only once its server has answered without a miss for $STABLE_SECONDS (a crash
# inside that window is caught before the task takes traffic, and a failing update is rolled back
# while the old task still serves). One probe watches that window itself, asking every quarter of
# a second from inside the container until the kernel's clock says the window is over: a request
# there is a cheap fork, while each Docker probe is an exec that costs dockerd, containerd and
# runc tens of milliseconds of CPU. Where nothing older serves meanwhile (a new site, or one back
# from no tasks: $STABLE_GATE=0, see `sites.spec`), the task is healthy at its first answer, so
# Traefik finds it while the window runs; the window is then watched in the background, and a miss
# makes the entry program end the server with status $UNSTABLE_EXIT, a failed task (the
# orchestrator says `site.deployed` only once a task answered past the window, `sites.rollout`).
#
# Once the task is older than $HEALTH_YOUNG_SECONDS (the start period, the window and a look: its
# age is the kernel's, from PID 1's start time, which nothing in the container can change) it is
# steady, and a steady probe rests $HEALTH_IDLE_SECONDS before it can pass, whatever the site does:
# the rest is measured on the kernel's clock and slept again when its `sleep` is killed early, and
# no file in the container (the site owns /tmp) shortens it. Docker starts a task's next probe only
# `interval` after the last one ended (its timeout covers the rest), so a steady site costs one
# exec per rest: fast where a rollout waits on it, nearly free while it idles. A steady probe that
# finds no mark of a pass before it asks first and fails at once, so a server that hangs is found
# within the rest plus the retries; a site that plays with the marks changes only how soon its
# own failure shows. Killing the probe itself fails it (Swarm replaces a task that fails
# `retries` of them). A task that dies is seen at once anyway (Docker's `die` event).
HEALTH_PROBE = f"""\
u="http://127.0.0.1:$PORT/"
t="${{HEALTH_TIMEOUT_SECONDS:-3}}"
now() {{ read -r up _ < /proc/uptime; echo "${{up%.*}}${{up#*.}}"; }}
age() {{ read -r s < /proc/1/stat; s=${{s##*) }}; set -- $s; echo $(( $(now) - ${{20}} )); }}
rest() {{
  e=$(( $(now) + $1 * 100 ))
  while l=$(( e - $(now) )) && [ "$l" -gt 0 ]; do sleep "$((l / 100)).$((l % 100 / 10))$((l % 10))"; done
}}
bounded() {{ if command -v timeout >/dev/null 2>&1; then timeout "$t" "$@"; else "$@"; fi; }}
answers() {{
  if command -v wget >/dev/null 2>&1; then
    bounded wget -q -S -O /dev/null "$u" 2>&1 | grep -q "HTTP/"
  elif command -v curl >/dev/null 2>&1; then
    curl -s -m "$t" -o /dev/null "$u"
  fi
}}
if [ "$(age)" -ge "$(( ${{HEALTH_YOUNG_SECONDS:-0}} * 100 ))" ]; then
  [ -e {PASSING_MARK} ] || [ -e {IDLE_MARK} ] || answers || exit 1
  rest "${{HEALTH_IDLE_SECONDS:-0}}"
  [ -e {IDLE_MARK} ] && exit 0
  answers && {{ : > {PASSING_MARK}; exit 0; }}
  rm -f {PASSING_MARK}
  exit 1
fi
[ -e {PASSING_MARK} ] && rest "${{HEALTH_IDLE_SECONDS:-0}}"
[ -e {IDLE_MARK} ] && {{ : > {PASSING_MARK}; exit 0; }}
if [ -e {STABLE_MARK} ]; then
  answers && {{ : > {PASSING_MARK}; exit 0; }}
  rm -f {PASSING_MARK}
  exit 1
fi
w="${{STABLE_SECONDS:-0}}"
quarters=$(( ${{w%%.*}} * 4 ))
case "$w" in
  *.25) quarters=$((quarters + 1)) ;;
  *.5) quarters=$((quarters + 2)) ;;
  *.75) quarters=$((quarters + 3)) ;;
esac
tries=$((t * 4))
until answers; do
  tries=$((tries - 1))
  [ "$tries" -gt 0 ] || exit 1
  sleep 0.25
done
e=$(( $(now) + quarters * 25 ))
watch() {{
  while [ "$(now)" -lt "$e" ]; do
    sleep 0.25
    answers || return 1
  done
}}
if [ "${{STABLE_GATE:-1}}" = 0 ]; then
  : > {PASSING_MARK}
  ( if watch; then : > {STABLE_MARK}; else kill -USR1 "$(cat {SUPERVISOR_MARK})"; fi ) </dev/null >/dev/null 2>&1 &
  exit 0
fi
watch || exit 1
: > {STABLE_MARK}
: > {PASSING_MARK}
"""
