# The orchestrator's production image (compose.yaml). It talks to the swarm through the mounted
# docker socket and bind-mounts site directories by their host paths, so the sites root must be
# mounted at the same path inside the container as on the host.
#
# BASE is any Debian-based image: with Docker Hub, the default python:3.11-slim (`docker build .`);
# without a registry, scripts/images.sh builds from a local Debian bookworm image
# (director/debian:bookworm) and installs Debian's python3 (3.11) here.
ARG BASE=python:3.11-slim
FROM ${BASE}

# Debian's python3 when the base has none (the official image has its own), iptables for
# `orchestrator netguard` (it writes the sites network's filter; nsenter comes with util-linux, in
# every Debian image), and the database clients whose dump programs `database.dump` and a retired
# database's final dump run (pg_dump, mariadb-dump).
RUN set -eux; \
    apt-get update; \
    command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv; \
    apt-get install -y --no-install-recommends iptables postgresql-client mariadb-client; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or later needed, not " + sys.version'

# The locked dependencies first (requirements/server.txt, hashes checked: a layer that changes
# only with the lock), then the contract (contract/, its own distribution) and the server without
# dependencies, built by the locked setuptools (requirements/build.txt). A `wheels/` directory in
# the build context (scripts/images.sh puts the locked wheels there, downloaded on the host) is
# used when present; PIP_INDEX_ARGS="--no-index" then keeps pip off the network. Without it pip
# asks PyPI (for the locked dependencies only: the contract is built from contract/).
ARG PIP_INDEX_ARGS=
COPY requirements/server.txt requirements/build.txt wheels* /build/
RUN set -eux; \
    python3 -m venv /opt/orchestrator; \
    /opt/orchestrator/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_INDEX_ARGS \
        --find-links /build --require-hashes -r /build/server.txt -r /build/build.txt
COPY contract /build/contract
COPY README.md pyproject.toml /build/src/
COPY orchestrator /build/src/orchestrator
RUN set -eux; \
    /opt/orchestrator/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_INDEX_ARGS \
        --no-build-isolation --no-deps /build/contract /build/src; \
    rm -rf /build; \
    ln -s /opt/orchestrator/bin/orchestrator /usr/local/bin/orchestrator

# Runs as root in the container, with a handful of capabilities (compose.yaml drops every other
# one): it holds the docker socket (root on the host whoever the user is), creates site
# directories and hands them to each site's uid, and its file workers act as each site's user
# per thread (setfsuid from root: the kernel then drops the file-system capabilities for them).
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# No inbound HTTP: the process writes a heartbeat (consuming, Docker answering; a broker away is
# said but passes: orchestrator/ops/heartbeat.py) and this reads it.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=6 CMD ["orchestrator", "healthcheck"]
ENTRYPOINT ["orchestrator"]
CMD ["run"]
