"""A Docker outage for one orchestrator only: it talks to dockerd through this forwarder (a
process of its own), and `hang()` stops the forwarder (SIGSTOP) as a hung dockerd would be stopped:
connections still open in the kernel's backlog, nothing answers, every call times out. The rest of
the machine keeps its Docker, so a test of what an outage does to our events runs on the parallel
workers instead of alone (a real dockerd stop, for the whole machine: `make test-slow`).

Run as a program: `python tests/support/dockergate.py LISTEN_PATH [DOCKER_SOCKET]` (standard library only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"
CHUNK = 64 * 1024


class DockerGate:
    def __init__(self, process: subprocess.Popen[bytes], path: Path) -> None:
        self._process = process
        self.path = path

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def hang(self, seconds: float) -> None:
        """Docker does not answer this gate's clients for `seconds`."""
        self._process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self._process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def docker_gate(path: Path) -> Iterator[DockerGate]:
    path.unlink(missing_ok=True)
    # Run as a file, not `-m support.dockergate`: the package's imports (the harness, the docker SDK,
    # aio-pika) took seconds of CPU, past the wait below on a busy machine; this file needs the
    # standard library alone.
    process = subprocess.Popen([sys.executable, "-I", __file__, str(path)])
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Docker gate did not listen on {path}")
            time.sleep(0.05)
        yield DockerGate(process, path)
    finally:
        process.send_signal(signal.SIGCONT)  # a stopped process does not act on SIGTERM
        process.terminate()
        process.wait(timeout=10)
        path.unlink(missing_ok=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: str) -> None:
    try:
        docker_r, docker_w = await asyncio.open_unix_connection(target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, docker_w), _pipe(docker_r, client_w))
    finally:
        for writer in (client_w, docker_w):
            writer.close()


async def _serve(listen: str, target: str) -> None:
    server = await asyncio.start_unix_server(lambda r, w: _forward(r, w, target), path=listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # At once: connections still open would each print a cancelled task's traceback.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(_serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else DOCKER_SOCKET))
