#!/bin/sh
# /usr/local/bin/orchestrator in the image: every `orchestrator ...` (the service's command, the
# HEALTHCHECK, an operator's `docker exec`) runs as the orchestrator user, not as root.
#
# Started as root, it becomes uid 10001 with the group that owns the docker socket (DOCKER_GID, or
# the mounted socket's own group) and exactly two capabilities, for the sites root: CHOWN (a new
# site directory is handed to the site's uid) and DAC_OVERRIDE (directories owned by site uids
# are created in and moved to the trash). They are passed as ambient capabilities, which work
# under `no-new-privileges` (file capabilities would not). The container needs CHOWN,
# DAC_OVERRIDE, SETUID, SETGID and SETPCAP for this (compose.yaml); the process keeps only the
# first two, also in its bounding set. Started as any other user, it runs as that user.
set -eu
if [ "$(id -u)" = 0 ]; then
    gid=${DOCKER_GID:-$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 10001)}
    caps=-all,+chown,+dac_override
    exec setpriv --reuid=10001 --regid="$gid" --clear-groups \
        --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" \
        -- /opt/orchestrator/bin/orchestrator "$@"
fi
exec /opt/orchestrator/bin/orchestrator "$@"
