"""RabbitMQ nodes the tests talk to: the local stack's (`LOCAL_BROKER`, shared by every test
process) or one a test module starts for itself (`own_broker`) so that it can stop and restart its
broker without dropping every other test's connections. The fault tests use their own; so their
broker restarts run on the parallel workers instead of alone at the end of the run."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CTL_TIMEOUT = 120
START_TIMEOUT = 60
DEFINITIONS = Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq" / "definitions.json"
# The local stack's broker answers its HTTP API on loopback (scripts/stack-up.sh): a vhost made or
# removed there costs a millisecond, where each rabbitmqctl call boots an Erlang VM (0.7 CPU-s).
LOCAL_API = "http://127.0.0.1:15672/api"


@dataclass(frozen=True)
class Broker:
    """A node on this machine: its AMQP port on loopback and its Erlang node name (None: the
    local stack's default node)."""

    port: int = 5672
    node: str | None = None
    api: str | None = None  # its HTTP API (the management plugin), if it has one

    def url(self, user: str, vhost: str = "") -> str:
        """AMQP as a local-stack user (their passwords are their names)."""
        return f"amqp://{user}:{user}@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT) -> str:
        """rabbitmqctl on this node; what it printed."""
        node = ["-n", self.node] if self.node else []
        done = subprocess.run(
            ["rabbitmqctl", "-q", *node, *args], check=True, capture_output=True, text=True, timeout=timeout
        )
        return done.stdout

    def import_definitions(self, definitions: dict[str, Any]) -> None:
        """Vhosts, permissions, exchanges, policies ... as a definitions file gives them."""
        if self.api:
            self._call("POST", "/definitions", definitions)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
            json.dump(definitions, file)
            file.flush()
            os.chmod(file.name, 0o644)  # read by the broker's own user
            self.ctl("import_definitions", file.name)

    def delete_vhost(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            if self.api:
                self._call("DELETE", f"/vhosts/{urllib.parse.quote(name, safe='')}")
            else:
                self.ctl("delete_vhost", name)
        except urllib.error.HTTPError as exc:
            if not (missing_ok and exc.code == 404):
                raise
        except subprocess.CalledProcessError:
            if not missing_ok:
                raise

    def _call(self, method: str, path: str, body: object = None) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=CTL_TIMEOUT):
            pass

    def listing(self, *args: str) -> Any:
        """A rabbitmqctl listing (`list_permissions -p VHOST`, ...) as JSON."""
        return json.loads(self.ctl(*args, "--formatter", "json"))

    def stop_app(self) -> None:
        """The broker application stops (every client's connection drops); its node stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup")

    def restart_app(self) -> None:
        """Stopped and started again: queues keep what they held, seconds rather than a node's
        restart."""
        self.stop_app()
        time.sleep(1)
        self.start_app()


LOCAL_BROKER = Broker(api=LOCAL_API)


def broker_definitions() -> dict[str, Any]:
    """The broker's users, permissions and exchanges, as the local stack and compose.yaml load them."""
    return json.loads(DEFINITIONS.read_text())  # type: ignore[no-any-return]


def _users(workdir: Path) -> Path:
    """The local stack's users (their passwords are their names, hashed as RabbitMQ does:
    base64(salt + sha256(salt + password))) as a definitions file the broker's user can read."""
    users = broker_definitions()["users"]
    for user in users:
        salt = os.urandom(4)
        user["password_hash"] = base64.b64encode(salt + hashlib.sha256(salt + user["name"].encode()).digest()).decode()
    path = workdir / "users.json"
    path.write_text(json.dumps({"users": users}))
    shutil.chown(path, "rabbitmq", "rabbitmq")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def own_broker(name: str) -> Iterator[Broker]:
    """A RabbitMQ node of its own on loopback (Debian's server, the local stack's users and limits,
    no TLS, no plugins; its data in a temporary directory), stopped and deleted after. The CLI reaches it
    with the local stack's Erlang cookie: both run as the rabbitmq user."""
    node = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    port, dist_port = _free_port(), _free_port()
    base = Path(tempfile.mkdtemp(prefix=f"rabbitmq-{name}-"))
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nmax_message_size = 4194304\n")
    (base / "enabled_plugins").write_text("[].\n")
    shutil.chown(base, "rabbitmq", "rabbitmq")
    for child in base.iterdir():
        shutil.chown(child, "rabbitmq", "rabbitmq")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        # Erlang distribution on loopback only, like the AMQP listener.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
    }
    broker = Broker(port, node)
    subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, capture_output=True, timeout=CTL_TIMEOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # -detached returns before the node registers; await_startup needs it registered
            try:
                broker.ctl("await_startup", "--timeout", "30")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        broker.ctl("import_definitions", str(_users(base)))
        yield broker
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            broker.ctl("stop", str(base / "pid"))  # returns once the node's process has exited
        shutil.rmtree(base, ignore_errors=True)
