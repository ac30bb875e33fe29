"""Every setting of the orchestrator, read once from the environment (prefix ``ORCHESTRATOR_``).

Defaults fit the local stack built by ``scripts/stack-up.sh``; production overrides them
(see ``compose.yaml``). docs/configuration.md is generated from this class.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.logging_setup import Level


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


# A file chunk's message, besides the chunk's base64: the request's path (4,096 characters, 6
# bytes each when JSON escapes them) and the other fields, with room to spare.
CHUNK_MESSAGE_OVERHEAD = 64 * 1024
REPLY_BUDGET_BYTES = 1024 * 1024


def chunk_message_bytes(chunk_bytes: int) -> int:
    """The largest message that carries a file chunk of `chunk_bytes` (a write or a read reply)."""
    return 4 * ((chunk_bytes + 2) // 3) + CHUNK_MESSAGE_OVERHEAD


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", frozen=True, extra="ignore")

    # --- broker -------------------------------------------------------------------------------
    # The broker, as the orchestrator's user (`amqps://` for TLS).
    amqp_url: str = "amqp://orchestrator:orchestrator@127.0.0.1:5672/"
    # A Docker secret holding the broker password; replaces the password in amqp_url.
    amqp_password_file: Path | None = None
    # TLS: the CA that verifies the broker, and a client certificate and key.
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    # The AMQP heartbeat: low enough that a dead broker is noticed within seconds.
    heartbeat_seconds: int = Field(default=5, ge=1)
    # The broker's `max_message_size` (rabbitmq.conf): a larger message closes the channel that
    # carried it. Every reply stays below it, and a file chunk (FILES_CHUNK_BYTES) must fit in it.
    amqp_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=256 * 1024)
    # Operators replay dead letters as a publisher Director trusts (the broker checks user_id): its
    # URL, and a file holding its password.
    replay_amqp_url: str = "amqp://director:director@127.0.0.1:5672/"
    replay_password_file: Path | None = None

    # --- topology -----------------------------------------------------------------------------
    # Director's site events: its exchange, the binding, and the work queue they are consumed from.
    inbound_exchange: str = "director.sites"
    binding_key: str = "site.*"
    work_queue: str = "orchestrator.site-events"
    # Where results, `site.health` and `orchestrator.drift` are published.
    results_exchange: str = "orchestrator.results"
    # A durable queue of results for Director, so results survive while Director is away.
    # Empty disables it; results are still published with `mandatory`.
    results_queue: str = "orchestrator.site-results"
    # Delayed retries: a transiently failed event waits in the retry queue for its TTL.
    retry_exchange: str = "orchestrator.retry"
    retry_queue: str = "orchestrator.site-events.retry"
    # Where expired retries come back from; bound to the work queue. Only our user may write here.
    requeue_exchange: str = "orchestrator.requeue"
    # Dead letters, with why in their headers (`orchestrator dead-letters` reads the queue).
    dead_letter_exchange: str = "orchestrator.dead-letters"
    dead_letter_queue: str = "orchestrator.site-events.dead"
    # Redeliveries before the broker dead-letters a message that keeps crashing the process. A queue
    # argument, like retry_delay_seconds: RabbitMQ refuses to redeclare a queue with another value
    # (the orchestrator exits at start with PRECONDITION_FAILED), so changing it on a running
    # deployment means deleting and recreating the queue.
    delivery_limit: int = Field(default=5, ge=1)
    # Terminal sessions: Director's commands (their own queue, so a keystroke never waits behind a
    # deploy) and the sessions' events, routing key `terminal.<session_id>`.
    terminal_exchange: str = "director.terminals"
    terminal_binding_key: str = "terminal.*"
    terminal_queue: str = "orchestrator.terminal-commands"
    terminal_events_exchange: str = "orchestrator.terminals"
    # Site files and logs: Director's requests (routing key = the operation), consumed from their
    # own queue; replies go to the default exchange with routing key = the request's `reply_to`,
    # which must be RabbitMQ's direct reply-to or a queue named `files_reply_queue_prefix`...
    files_exchange: str = "director.files"
    files_queue: str = "orchestrator.file-requests"
    files_reply_queue_prefix: str = Field(default="director.replies.", min_length=2)

    # The name of this deployment, on what it creates that only it may clean up (terminal
    # containers): two deployments on one swarm (or two test workers) leave each other's alone.
    deployment: str = Field(default="director", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # --- processing ---------------------------------------------------------------------------
    # Docker API calls in flight at once: the only thing an event holds a worker for (waiting for
    # a rollout or a route holds none).
    concurrency: int = Field(default=8, ge=1)
    # Messages held at once; more than `concurrency`, so events queued behind one busy site's lock
    # do not take every slot from the other sites.
    prefetch: int = Field(default=32, ge=1)
    # How long a publish waits for the broker's confirm.
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # In-process retry budget for transient errors; far below RabbitMQ's 30 min consumer timeout.
    retry_budget_seconds: float = Field(default=30.0, ge=0)
    # The retry queue's TTL: how long a transiently failed event waits before it is tried again (a
    # queue argument: see delivery_limit).
    retry_delay_seconds: float = Field(default=15.0, gt=0)
    # Deliveries before a transiently failing event is dead-lettered.
    max_attempts: int = Field(default=5, ge=1)
    # On SIGTERM, how long in-flight messages may take to finish; the rest go back to the queue.
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # Log lines (JSON, on stderr) at this level and above; unset: INFO for run, netguard and
    # docker-proxy, WARNING for the one-shot commands, whose report (on stdout) is what one reads.
    log_level: Level | None = None
    # `orchestrator healthcheck` reads this file; the running process rewrites it every interval.
    heartbeat_file: Path = Path("/tmp/orchestrator.heartbeat")
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    # Broker users whose site events, terminal commands and file requests are accepted (the broker
    # vouches for the messages' user_id).
    allowed_publishers: Annotated[CsvList, Field(default_factory=lambda: ["director"])]

    # --- docker / swarm -----------------------------------------------------------------------
    # The Docker engine: a swarm manager's API.
    docker_url: str = "unix:///var/run/docker.sock"
    # The bound of one Docker API call.
    docker_timeout_seconds: float = Field(default=30.0, gt=0)
    # The overlay network site services join, which Traefik watches.
    network: str = "director-sites"
    # Keep sites from opening connections on that network (to each other, to Traefik's API, to
    # anything on it) with a filter in the network's namespace on this node (netguard/).
    # Needs root and the engine's exec-root; where the orchestrator runs in a container, leave it
    # to `orchestrator netguard` on every site node (compose.yaml) and turn it off here.
    network_guard: bool = True
    # `<the engine's --exec-root>/netns`, where Docker keeps its network namespaces.
    netns_dir: Path = Path("/var/run/docker/netns")
    # Networks (CIDRs) sites may not reach besides the nodes and the registry, which the guard
    # finds itself: the operator's own infrastructure (netguard/rules.py `node_chain`).
    network_guard_blocked: Annotated[CsvList, Field(default_factory=list)]
    # Besides every join Docker reports: how often the guard checks the filter anyway.
    network_guard_resync_seconds: float = Field(default=30.0, gt=0)
    # Time for a service's tasks to become healthy and stable before `site.failed`; covers a server
    # that never answers (health start period + retries) with room to spare.
    converge_timeout_seconds: float = Field(default=90.0, gt=0)
    # Swarm update/restart timings, in seconds (converted to the Engine's nanoseconds in spec.py).
    update_delay_seconds: float = Field(default=1.0, ge=0)
    update_monitor_seconds: float = Field(default=2.0, ge=0)
    restart_delay_seconds: float = Field(default=2.0, ge=0)
    # A crash-looping site costs the daemon a container start every few seconds, forever: Swarm
    # gives up on a task after this many restarts within the window (0 = never), the site is then
    # `down` (site.health) until its next update or restart_requested starts it afresh.
    restart_max_attempts: int = Field(default=30, ge=0, le=1000)
    restart_window_seconds: float = Field(default=600.0, ge=0)
    # How long a stopping task has after SIGTERM before it is killed (drain_seconds is added).
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    # A stopping task keeps serving this long after SIGTERM, so Traefik (which drops a task once
    # its desired state is shutdown, at its next refresh) stops sending it requests first.
    drain_seconds: float = Field(default=3.0, ge=0)
    # Every site task is probed from inside ($PORT answers HTTP). Swarm counts a task as running
    # only once healthy, so a start-first update switches over only to a task that answers.
    # The interval is how often a new or failing task is looked at (a rollout waits on it); a
    # steady one rests `health_idle_seconds` inside its container first, so it costs Docker one
    # exec per rest instead of one per interval (see sites/scripts.py).
    health_interval_seconds: float = Field(default=0.5, gt=0)
    health_idle_seconds: float = Field(default=60.0, ge=0)
    # Each probe's bound, the grace at a task's start, and the failures before it is unhealthy.
    health_timeout_seconds: float = Field(default=3.0, gt=0)
    health_start_period_seconds: float = Field(default=30.0, ge=0)
    health_retries: int = Field(default=3, ge=1)
    # A task is healthy only after answering for this long without a miss: a server that crashes
    # a few seconds after start never takes traffic, and a failing update is rolled back while
    # the old task still serves.
    stable_seconds: float = Field(default=5.0, ge=0)
    # Site tasks bind-mount their directory by host path, so they may run only on nodes that have
    # the sites root (shared storage, the same path on each): those labelled `<label>=true`
    # (scripts/stack-up.sh labels the local manager, scripts/cluster.sh its workers). Empty: any
    # node (a single-node swarm whose node nobody labels).
    site_node_label: str = Field(default="director.sites", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")
    # On a swarm of several nodes, how often the task counts of every service are surveyed: the
    # manager's event stream has no container events of other nodes (see swarm/changes.py). 0: never.
    task_survey_seconds: float = Field(default=2.0, ge=0)
    # More swarm constraints for site tasks, e.g. "node.labels.zone==a".
    placement_constraints: Annotated[CsvList, Field(default_factory=list)]

    # How long a deleted site's tombstone is kept (a late, older event cannot resurrect it): a
    # site that existed, and one the swarm never held (a reordered create may still come: at least
    # a message's longest way back through the retries).
    tombstone_days: float = Field(default=30.0, gt=0)
    unknown_tombstone_seconds: float = Field(default=3600.0, ge=60)
    # How often the active replica removes expired tombstones.
    housekeeping_seconds: float = Field(default=600.0, gt=0)

    # Every interval, a `orchestrator.drift` report when anything drifted (0: never).
    drift_report_seconds: float = Field(default=3600.0, ge=0)
    # Trash older than this shows as drift (it is never deleted by the orchestrator).
    trash_max_age_days: float = Field(default=30.0, gt=0)

    # --- traefik --------------------------------------------------------------------------------
    # Where `site.deployed` is verified: a request with the site's Host header must be answered
    # by the site through this entrypoint.
    traefik_url: str = "http://127.0.0.1:8000"
    # Traefik's API (its `traefik` entrypoint, deploy/traefik/traefik.yml), to check that it routes
    # to exactly the current tasks; empty: not checked. The local stack publishes it on loopback.
    traefik_api_url: str = "http://127.0.0.1:8080"
    # How long Traefik may take to serve a healthy site before `not_routed`.
    route_timeout_seconds: float = Field(default=20.0, gt=0)
    # A redelivered event of a site verified this recently, with nothing happened to its tasks
    # since (Docker's events say), reuses that check instead of asking Traefik again.
    reverify_seconds: float = Field(default=30.0, ge=0)
    # Site routers get this fixed priority, so no site can outrank another router (the panel's)
    # by the length of its rule.
    router_priority: int = Field(default=1, ge=1)

    # --- sites --------------------------------------------------------------------------------
    # Site directories: the same path on the host (site tasks bind-mount them by host path); mount it
    # nosuid,nodev.
    sites_root: Path = Path("/srv/director/sites")
    # Where deleted sites' directories go, under the sites root.
    trash_dir_name: str = ".trash"
    # The image of a dynamic site that names none, and of static sites' terminals.
    default_image: str = "director/base:latest"
    # Non-custom images a site may name.
    allowed_default_images: Annotated[CsvList, Field(default_factory=lambda: ["director/base:latest"])]
    # The image of static sites.
    static_image: str = "nginx:latest"
    # The port sites listen on ($PORT).
    site_port: int = Field(default=80, ge=1, le=65535)
    # The Traefik entrypoint site routers use.
    traefik_entrypoint: str = "web"
    # Custom images: the local stack's registry (scripts/stack-up.sh) on the bridge every test node
    # reaches; production names its own (TLS).
    registry: str = "198.18.213.1:5000/sites"
    # The registry's HTTP API (tags listed, old manifests deleted): plain HTTP on the local stack's
    # bridge, declared insecure to every engine; production: https.
    registry_api_url: str = "http://198.18.213.1:5000"
    # --- site image builds (site.image_requested) ---------------------------------------------
    # Builds are heavy (a CPU for seconds, the tools image's apt): at most this many at once, on
    # Docker calls of their own, so a build never holds a deploy's worker.
    build_concurrency: int = Field(default=1, ge=1, le=8)
    # A build past this is cancelled (the connection is closed, which stops Docker's build).
    build_timeout_seconds: float = Field(default=300, gt=0)
    # Limits of every build step's container (Docker's `container_limits`).
    build_memory_mib: int = Field(default=512, ge=16)
    build_cpu_shares: int = Field(default=512, ge=2)
    # Builds have no network: packages come from this local repository (Debian .debs and their
    # Packages index, made by stack-up), resolved and unpacked by the tools image's apt.
    build_packages_dir: Path = Path("/var/lib/director-registry/debs")
    build_tools_image: str = "director/debian:bookworm"
    # Packages one image recipe may name.
    max_image_packages: int = Field(default=32, ge=0, le=256)
    # The newest tags kept per site in the registry (and on the builder); older ones are deleted.
    image_keep: int = Field(default=3, ge=1)

    # --- terminals ------------------------------------------------------------------------------
    # Open sessions per site.
    terminal_max_per_site: int = Field(default=3, ge=1)
    # Sessions this process holds at once, whatever the sites.
    terminal_max_total: int = Field(default=100, ge=1)
    # Output a session may send; past it the shell waits (nothing is dropped).
    terminal_output_bytes_per_second: int = Field(default=256 * 1024, ge=1024)
    # A session without input for this long is closed; none lives longer than the lifetime.
    terminal_idle_seconds: float = Field(default=900.0, gt=0)
    terminal_max_lifetime_seconds: float = Field(default=8 * 3600.0, gt=0)
    # Output is gathered this long (or up to `terminal_batch_bytes`) into one message.
    terminal_batch_seconds: float = Field(default=0.003, ge=0)
    terminal_batch_bytes: int = Field(default=16 * 1024, ge=1024)
    # Network of session containers: none at all by default, so sessions of different sites cannot
    # reach each other, the host or the sites' network ("bridge": outbound access, e.g. git).
    terminal_network: str = "none"

    # --- site files and logs ------------------------------------------------------------------
    # Requests held at once on the file channel (a chunk is at most ~1.4 MB: this bounds memory).
    files_prefetch: int = Field(default=32, ge=1)
    # Threads doing file I/O (the event loop never touches a site's files).
    files_workers: int = Field(default=8, ge=1)
    # File threads one site's requests may hold at once: its other requests wait their turn
    # without a thread, so a site whose requests are slow leaves the rest to the other sites.
    files_site_threads: int = Field(default=2, ge=1)
    # Requests of one site in flight at once; past it the reply is `busy`.
    files_site_concurrency: int = Field(default=12, ge=1)
    # The most bytes one `files.read` returns and one `files.write` chunk carries.
    files_chunk_bytes: int = Field(default=1024 * 1024, ge=4096, le=16 * 1024 * 1024)
    # The largest upload, and the largest zip a `files.archive` streams (past them: `too_large`).
    files_max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=0)
    files_max_archive_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    # Walks of a whole tree (usage, archive, recursive delete) and scans of one directory (a
    # listing page) stop with `too_large` past these budgets instead of running on.
    files_walk_max_seconds: float = Field(default=30.0, gt=0)
    files_walk_max_entries: int = Field(default=200_000, ge=1)
    # Uploads under way, in all and per site (more: `busy`), and how long one may sit idle
    # before its temporary file is removed.
    files_max_uploads: int = Field(default=64, ge=1)
    files_max_uploads_per_site: int = Field(default=4, ge=1)
    files_upload_idle_seconds: float = Field(default=300.0, gt=0)
    # Streams (archives, log follows) under way, in all and per site (more: `busy`).
    files_max_streams: int = Field(default=32, ge=1)
    files_max_streams_per_site: int = Field(default=4, ge=1)
    # A request nobody took this long is dropped by the broker (its requester gave up long ago);
    # at most this many wait in the queue (more: the broker refuses Director's publish).
    files_request_ttl_seconds: float = Field(default=60.0, gt=0)
    files_queue_max_length: int = Field(default=10_000, ge=1)
    # A `logs.follow` ends after this long at the latest.
    logs_follow_max_seconds: float = Field(default=3600.0, gt=0)

    # --- security -----------------------------------------------------------------------------
    # When set, a site's domains must end in one of these.
    allowed_domain_suffixes: Annotated[CsvList, Field(default_factory=list)]
    # Whether IP literals, and wildcards (`*.school.example`, which own their zone), may be domains.
    allow_ip_domains: bool = False
    allow_wildcard_domains: bool = False
    # Ceilings of a site's CPU and memory limits (larger requests are clamped).
    max_cpus: float = Field(default=2.0, gt=0)
    max_memory: str = "2Gi"
    # Host names (and everything under them) no site may claim, e.g. the panel's own.
    reserved_domains: Annotated[CsvList, Field(default_factory=list)]
    # Domains one site may claim.
    max_domains_per_site: int = Field(default=20, ge=1)
    # A claim on a domain another site holds waits this long for a move in flight, then fails.
    domain_wait_seconds: float = Field(default=5.0, ge=0)
    # Site tasks run as uid = gid = base + site id and own their site directory: nothing a site
    # leaves on the host (a setuid binary) belongs to root.
    # The default sits above the /etc/subuid ranges Debian hands out (100000 on, 65536 each), and
    # every uid base + site id stays below 2^32 - 1 (which chown reads as "do not change").
    site_uid_base: int = Field(default=1_000_000_000, ge=1000, le=2**32 - 2**31 - 2)
    # Capabilities a site keeps; none needed by a non-root site (Docker lets containers bind
    # low ports without NET_BIND_SERVICE).
    cap_add: Annotated[CsvList, Field(default_factory=list)]
    # Processes per site task.
    pids_limit: int = Field(default=512, ge=16)
    # The most a site's directory may hold ("0": no limit; else e.g. 512Mi or 10Gi), enforced by
    # the kernel where the sites root allows it (btrfs with quotas: see files/quota.py).
    site_disk_limit: str = "0"
    # Site containers' json-file logs: the size of a file, and the files kept.
    log_max_size: str = "10m"
    log_max_files: int = Field(default=3, ge=1)

    _csv = field_validator(
        "allowed_publishers",
        "allowed_default_images",
        "network_guard_blocked",
        "allowed_domain_suffixes",
        "cap_add",
        "placement_constraints",
        "reserved_domains",
        mode="before",
    )(_split_csv)

    @field_validator("network_guard_blocked")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            IPv4Network(network)  # ValueError: not an IPv4 network
        return value

    @model_validator(mode="after")
    def _chunks_fit_the_broker(self) -> Settings:
        largest = chunk_message_bytes(self.files_chunk_bytes)
        if largest > self.amqp_max_message_bytes:
            raise ValueError(
                f"files_chunk_bytes {self.files_chunk_bytes} makes messages of up to {largest} bytes (base64 and "
                f"the rest of a files.write or files.read), past amqp_max_message_bytes {self.amqp_max_message_bytes} "
                "(the broker's max_message_size): the broker would close the channel that carries one"
            )
        return self

    def reply_budget_bytes(self) -> int:
        """What one reply of entries or lines (a listing page, a log tail, a follow's batch) may
        hold: well below the broker's limit, and small enough for a browser."""
        return min(REPLY_BUDGET_BYTES, self.amqp_max_message_bytes // 4)

    def registry_hosts(self) -> list[str]:
        """The registry's host names or addresses (of the image names and of its API)."""
        hosts = {self.registry.split("/")[0].rpartition(":")[0] or self.registry.split("/")[0]}
        hosts.add(urlsplit(self.registry_api_url).hostname or "")
        return sorted(h for h in hosts if h)

    def broker_url(self) -> str:
        return _with_password(self.amqp_url, self.amqp_password_file)

    def replay_broker_url(self) -> str:
        return _with_password(self.replay_amqp_url, self.replay_password_file)


def _with_password(url: str, password_file: Path | None) -> str:
    if password_file is None:
        return url
    password = password_file.read_text().strip()
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""  # kept as written (already percent-encoded)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))
