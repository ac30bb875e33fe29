#!/usr/bin/env bash
# Remove the test cluster's workers and what was added for them (see scripts/cluster.sh).
exec bash "$(dirname "$0")/cluster.sh" down
