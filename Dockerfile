# The orchestrator's production image (see compose.yaml). It talks to the swarm through the
# mounted docker socket and bind-mounts site directories by their host paths, so the sites root
# must be mounted at the same path inside the container as on the host.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
# Runs as root: it needs the docker socket and must create directories under the sites root.
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
# No inbound HTTP: the process writes a heartbeat (broker connected, consuming, Docker answering)
# and this reads it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["orchestrator", "healthcheck"]
ENTRYPOINT ["orchestrator"]
CMD ["run"]
