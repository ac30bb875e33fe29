#!/usr/bin/env bash
# N extra Docker engines on this machine as swarm workers (see scripts/cluster.sh).
exec bash "$(dirname "$0")/cluster.sh" up "${1:-2}"
