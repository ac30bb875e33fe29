"""A site service's logs, from the swarm (`docker service logs`: every task's lines, whichever
node runs it), with the site's env values masked as in `run_script_failed`.

`tail` runs on the Docker pool; a follow is a long-lived stream read by its own thread (see
`files.follows`) on its own connection, and `LogStream.close` ends it from any thread. A stream
silent for `FOLLOW_SILENCE_SECONDS` ends too: Docker's follow of a service can miss a task that
starts while it runs (seen across a restart: the new task's lines never came), and the follow's
reconnect asks again for every task there is.
"""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests
import urllib3.exceptions
from docker.types.daemon import CancellableStream

from orchestrator.errors import OrchestratorError
from orchestrator.labels import SWARM_TASK_ID
from orchestrator.logging_setup import mask
from orchestrator.swarm.client import DockerClient, map_api_error
from orchestrator.swarm.services import OWN_ENV_KEYS
from orchestrator_contract.files import MAX_LOG_LINE_CHARS

log = logging.getLogger("orchestrator.logs")
# A line longer than this is read no further (Docker itself splits lines at 16 KiB); it is shown
# up to MAX_LOG_LINE_CHARS, once the site's env values in it are masked.
MAX_LINE = 16 * 1024
TASK_DETAIL = f"{SWARM_TASK_ID}=".encode()
FOLLOW_SILENCE_SECONDS = 10.0
MAX_FRAME = 1024 * 1024  # bytes of one frame of Docker's multiplexed stream (a log line's is < 17 KiB)


@dataclass(frozen=True)
class LogRecord:
    """One line a task wrote: when (`ns`: nanoseconds since the epoch, Docker's own precision),
    which task, what (masked)."""

    ns: int
    task: str
    text: str
    truncated: bool = False

    @property
    def ts(self) -> datetime:
        return datetime.fromtimestamp(self.ns // 1000 / 1e6, UTC)


def parse_line(raw: bytes, secrets: list[str]) -> LogRecord | None:
    """`<RFC 3339 nano timestamp> <details> <text>` as the service logs API writes it with
    `timestamps` and `details`; None for anything else."""
    stamp, _, rest = raw.rstrip(b"\n").partition(b" ")
    ns = parse_ns(stamp.decode("ascii", "replace"))
    if ns is None:
        return None
    details, _, text = rest.partition(b" ") if rest.startswith(b"com.docker.") else (b"", b"", rest)
    task = ""
    if (start := details.find(TASK_DETAIL)) >= 0:
        task = sys.intern(details[start + len(TASK_DETAIL) :].split(b",", 1)[0].decode("ascii", "replace"))
    masked = mask(text[:MAX_LINE].decode(errors="replace"), secrets)
    return LogRecord(ns, task, masked[:MAX_LOG_LINE_CHARS], len(text) > MAX_LINE or len(masked) > MAX_LOG_LINE_CHARS)


def parse_ns(stamp: str) -> int | None:
    """RFC 3339 with up to nanoseconds (Docker trims trailing zeros) to nanoseconds since the epoch."""
    if not stamp.endswith("Z") or "T" not in stamp:
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    try:
        seconds = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + nanos


class LogStream:
    """A follow of one service's logs: iterate lines (blocking), `close()` from any thread."""

    def __init__(self, api: docker.APIClient, stream: CancellableStream, secrets: list[str]) -> None:
        self._api = api
        self._stream = stream
        self._secrets = secrets
        self._closed = False

    def __iter__(self) -> Iterator[LogRecord]:
        pending = b""
        try:
            for chunk in self._stream:
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    line, pending = pending[: end + 1], pending[end + 1 :]
                    if (record := parse_line(line, self._secrets)) is not None:
                        yield record
                if len(pending) > MAX_LINE * 4:
                    pending = b""  # a line without end: dropped rather than held
        except urllib3.exceptions.HTTPError:
            return  # silent past FOLLOW_SILENCE_SECONDS (a read timeout), or broken: the stream ends

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.close()
        except Exception as exc:  # closing a stream that ended already
            log.debug("closing a log stream", extra={"fields": {"error": repr(exc)}})
        self._api.close()


class ServiceLogs:
    def __init__(self, docker_client: DockerClient, base_url: str) -> None:
        self._docker = docker_client
        self._base_url = base_url

    async def tail(self, name: str, lines: int) -> list[LogRecord] | None:
        """The last `lines` lines of the service's tasks, oldest first; None: no such service."""

        def read(api: docker.APIClient) -> list[LogRecord] | None:
            secrets = site_secrets(api, name)
            if secrets is None:
                return None
            if lines == 0:
                return []
            raw = api.service_logs(
                name, stdout=True, stderr=True, timestamps=True, details=True, tail=lines, is_tty=False
            )
            records = [r for r in (parse_line(line, secrets) for line in _lines(raw)) if r is not None]
            records.sort(key=lambda r: r.ns)  # each task's tail, merged
            return records[-lines:]

        return await self._docker.run(read)

    async def api_version(self) -> str:
        return await self._docker.run(lambda api: str(api.api_version))

    def follow(self, name: str, version: str, backlog: int, since_ns: int | None) -> LogStream | None:
        """Blocking (a follow thread): a stream of the service's lines from now (with `backlog`
        lines before), or from `since_ns`; None when the service is gone."""
        api = docker.APIClient(base_url=self._base_url, version=version, timeout=None)
        try:
            secrets = site_secrets(api, name)
            if secrets is None:
                api.close()
                return None
            params: dict[str, Any] = {
                "details": True,
                "follow": True,
                "stdout": True,
                "stderr": True,
                "timestamps": True,
                "tail": "all" if since_ns is not None else str(backlog),
            }
            if since_ns is not None:
                params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
            url = api._url("/services/{0}/logs", name)
            response = api._get(url, params=params, stream=True, timeout=FOLLOW_SILENCE_SECONDS)
            api._raise_for_status(response)
            stream = CancellableStream(_frames(response), response)
        except docker.errors.APIError as exc:
            api.close()
            raise map_api_error(exc) from exc
        except (docker.errors.DockerException, OSError) as exc:
            api.close()
            raise OrchestratorError(f"docker is unreachable: {exc}") from exc
        return LogStream(api, stream, secrets)

    def task_starts(self, name: str, version: str) -> dict[str, int] | None:
        """Blocking (a follow whose stream ended asks): when each task meant to run was created
        (ns); None when the service is gone."""
        api = docker.APIClient(base_url=self._base_url, version=version, timeout=30)
        try:
            tasks = api.tasks(filters={"service": name, "desired-state": "running"})
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if "not found" in str(exc.explanation or ""):  # a service removed between our calls
                return None
            raise map_api_error(exc) from exc
        finally:
            api.close()
        return {task["ID"]: parse_ns(task.get("CreatedAt", "")) or 0 for task in tasks}


def site_secrets(api: docker.APIClient, name: str) -> list[str] | None:
    """The site's env values (often secrets), to mask; None when the service does not exist."""
    try:
        spec = api.inspect_service(name)["Spec"]
    except docker.errors.NotFound:
        return None
    env = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Env") or []
    return [value for key, _, value in (v.partition("=") for v in env) if key not in OWN_ENV_KEYS]


def _frames(response: requests.Response) -> Iterator[bytes]:
    """The payloads of Docker's multiplexed stream (an 8-byte header: stream, 3 bytes of 0, the
    length), read with the request's timeout kept on the socket (docker's own reader drops it)."""
    while len(header := response.raw.read(8)) == 8:
        (length,) = struct.unpack(">xxxxL", header)
        if length > MAX_FRAME:
            return  # no frame of a log is that long: not this protocol (a TTY service), or corrupt
        if length and not (payload := response.raw.read(length)):
            return
        if length:
            yield payload


def _lines(raw: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in raw:
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            yield pending[: end + 1]
            pending = pending[end + 1 :]
    if pending:
        yield pending
