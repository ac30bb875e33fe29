# The orchestrator's production image (compose.yaml). It talks to the swarm through the mounted
# docker socket and bind-mounts site directories by their host paths, so the sites root must be
# mounted at the same path inside the container as on the host.
#
# BASE is any Debian-based image: with Docker Hub, the default python:3.11-slim (`docker build .`);
# without a registry, scripts/images.sh builds from a local Debian bookworm image
# (director/debian:bookworm) and installs Debian's python3 (3.11) here.
ARG BASE=python:3.11-slim
FROM ${BASE}

# Debian's python3 when the base has none (and setpriv, in util-linux up to bookworm).
RUN set -eux; \
    packages=""; \
    command -v python3 >/dev/null || packages="python3 python3-venv"; \
    command -v setpriv >/dev/null || packages="$packages setpriv"; \
    if [ -n "$packages" ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends $packages; \
        apt-get clean; rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or later needed, not " + sys.version'; \
    useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin orchestrator

# The dependencies first (a layer that changes only with pyproject.toml), then the package.
# A `wheels/` directory in the build context (scripts/images.sh puts the dependencies' wheels
# there, built on the host) is used when present; PIP_INDEX_ARGS="--no-index" then keeps pip
# off the network. Without it pip asks PyPI.
ARG PIP_INDEX_ARGS=
COPY pyproject.toml wheels* /build/
RUN set -eux; \
    python3 -m venv /opt/orchestrator; \
    mkdir -p /build/stub/orchestrator; \
    cp /build/pyproject.toml /build/stub/; touch /build/stub/README.md /build/stub/orchestrator/__init__.py; \
    /opt/orchestrator/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_INDEX_ARGS \
        --find-links /build /build/stub; \
    /opt/orchestrator/bin/pip uninstall -y -q orchestrator
COPY README.md /build/src/
COPY orchestrator /build/src/orchestrator
RUN set -eux; \
    cp /build/pyproject.toml /build/src/; \
    /opt/orchestrator/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_INDEX_ARGS \
        --find-links /build --no-deps /build/src; \
    rm -rf /build
# `orchestrator` runs as uid 10001 (the docker socket's group, CHOWN and DAC_OVERRIDE only),
# whoever calls it: see the script.
COPY deploy/orchestrator/orchestrator.sh /usr/local/bin/orchestrator

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# No inbound HTTP: the process writes a heartbeat (broker connected, consuming, Docker answering)
# and this reads it.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=6 CMD ["orchestrator", "healthcheck"]
ENTRYPOINT ["orchestrator"]
CMD ["run"]
