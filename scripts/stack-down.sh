#!/usr/bin/env bash
# Stop the local stack's Traefik container and remove orchestrator-managed
# services. Leaves dockerd, swarm, network, images and RabbitMQ running.
set -euo pipefail
LABEL=com.director.managed-by=orchestrator

services=$(docker service ls -q --filter "label=$LABEL")
if [ -n "$services" ]; then
    echo "[stack-down] removing $(wc -w <<<"$services") service(s) labelled $LABEL"
    docker service rm $services >/dev/null
fi
if docker container inspect director-traefik >/dev/null 2>&1; then
    echo "[stack-down] removing container director-traefik"
    docker rm -f director-traefik >/dev/null
fi
echo "[stack-down] done"
