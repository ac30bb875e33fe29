"""Docker calls off the event loop: a bounded thread pool, one client, and Docker's failures as
our error types (the `concurrency` setting bounds the calls in flight). Shared by the swarm
adapter and the terminal sessions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import docker
import docker.errors
import requests.exceptions

from orchestrator.errors import DockerConflict, DockerRejected, DockerUnavailable, TransientError
from orchestrator_contract.codes import ErrorCode

T = TypeVar("T")


class DockerClient:
    def __init__(self, base_url: str, timeout: float, concurrency: int) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._workers = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="docker")
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()

    async def run(self, call: Callable[[docker.APIClient], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, call: Callable[[docker.APIClient], T]) -> T:
        try:
            return call(self._api())
        except docker.errors.APIError as exc:
            raise map_api_error(exc) from exc
        except (docker.errors.InvalidArgument, docker.errors.InvalidVersion) as exc:
            raise DockerRejected(f"the docker client refused the request: {exc}") from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
            with self._lock:
                self._client = None  # reconnect (and renegotiate the API version) next time
            raise DockerUnavailable(f"docker is unreachable: {exc}") from exc

    def _api(self) -> docker.APIClient:
        with self._lock:
            client = self._client
        if client is None:
            # Made outside the lock: "auto" asks the daemon for its API version, and a daemon that
            # hangs would otherwise hold every other worker behind this one for the whole timeout.
            client = docker.APIClient(
                base_url=self._base_url, version="auto", timeout=self._timeout, max_pool_size=self._workers
            )
            with self._lock:
                self._client = client = self._client or client
        return client


def map_api_error(exc: docker.errors.APIError) -> Exception:
    status = exc.status_code or 500
    text = str(exc.explanation or exc)
    if "out of sequence" in text or status == 409:
        return DockerConflict(f"the service changed concurrently: {text}")
    if status >= 500:
        return TransientError(f"docker error {status}: {text}", code=ErrorCode.DOCKER_ERROR)
    return DockerRejected(f"docker refused the request ({status}): {text}")
