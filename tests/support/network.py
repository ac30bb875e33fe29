"""The sites network as a hostile site sees it: a request from inside a container, and the
network guard run as on a production node (`orchestrator netguard`), each namespace's filter put
back as it was found."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker

from harness.stack import ROOT
from orchestrator.netguard.rules import NODE_CHAIN


def answers(api: docker.APIClient, container: dict[str, Any], target: str, port: int) -> bool:
    """Whether an HTTP request from inside `container` (as its own user) gets an answer."""
    probe = api.exec_create(
        container["Id"], ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} {port}"]
    )
    return b"HTTP/" in api.exec_start(probe["Id"])


def database_answers(api: docker.APIClient, container: dict[str, Any], target: str, port: int) -> bool:
    """Whether a database server answers a connection from inside `container`: PostgreSQL's answer
    to an SSLRequest, or MariaDB's greeting (which comes unasked)."""
    ssl_request = "\\000\\000\\000\\010\\004\\322\\026\\057"
    probe = api.exec_create(container["Id"], ["sh", "-c", f"printf '{ssl_request}' | nc -w 2 {target} {port}"])
    return len(api.exec_start(probe["Id"])) > 0


def address(api: docker.APIClient, container: dict[str, Any], network: str) -> str:
    return str(api.inspect_container(container["Id"])["NetworkSettings"]["Networks"][network]["IPAddress"])


@contextlib.contextmanager
def filter_restored(namespace: Path) -> Iterator[None]:
    """The namespace's filter table as found, again afterwards."""
    assert namespace.exists(), f"{namespace}: the network has no namespace on this node (no endpoint on it?)"
    found = subprocess.run(
        ["nsenter", f"--net={namespace}", "iptables-save", "-t", "filter"], capture_output=True, check=True
    ).stdout
    try:
        yield
    finally:
        if namespace.exists():
            subprocess.run(["nsenter", f"--net={namespace}", "iptables-restore"], input=found, check=True)


def in_netns(netns: Path | None, command: list[str]) -> list[str]:
    """`command` in the network namespace `netns` (None: this process's own)."""
    return command if netns is None else ["nsenter", f"--net={netns}", *command]


@contextlib.contextmanager
def node_chain_removed(netns: Path | None = None) -> Iterator[None]:
    """The guard's chain in a node's own filter table (netguard/rules.py `node_chain`; this
    machine's, or the namespace `netns`'s: a test worker's) removed afterwards, with its jumps,
    unless it was there before (a guard of the demo's, say)."""

    def iptables(*args: str) -> int:
        return subprocess.run(in_netns(netns, ["iptables", *args]), capture_output=True).returncode

    there = iptables("-S", NODE_CHAIN) == 0
    try:
        yield
    finally:
        if not there:
            for hook in ("INPUT", "FORWARD"):
                while iptables("-D", hook, "-j", NODE_CHAIN) == 0:
                    pass
            iptables("-F", NODE_CHAIN)
            iptables("-X", NODE_CHAIN)


@contextlib.contextmanager
def guarding(env: dict[str, str], log_path: Path, netns: Path | None = None) -> Iterator[None]:
    """`orchestrator netguard` with `env` (in the network namespace `netns`, as a node's own
    guard runs in its node's), once it has written the filter (a second or so: waited for here,
    off the event loop's mind), stopped cleanly afterwards."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            in_netns(netns, [sys.executable, "-m", "orchestrator", "netguard"]),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 20
        while "sites network filtered" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        yield
        assert "cannot filter" not in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(10) == 0, log_path.read_text()[-2000:]


def vxlan_datagram(vni: int, inner: dict[str, str], payload: bytes) -> bytes:
    """A VXLAN packet (RFC 7348) carrying an Ethernet/IPv4/UDP frame: what a node's overlay sends
    another, made by hand. `inner`: src_mac, dst_mac, src_ip, dst_ip, dst_port."""
    udp = struct.pack("!HHHH", 40000, int(inner["dst_port"]), 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(inner["src_ip"]), socket.inet_aton(inner["dst_ip"]),
    )  # fmt: skip
    words = sum(struct.unpack("!10H", header))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    header = header[:10] + struct.pack("!H", ~words & 0xFFFF) + header[12:]
    frame = bytes.fromhex(inner["dst_mac"].replace(":", "")) + bytes.fromhex(inner["src_mac"].replace(":", ""))
    return struct.pack("!II", 0x08000000, vni << 8) + frame + b"\x08\x00" + header + udp


SEND = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))
"""
LISTEN = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("listening", flush=True)
try:
    print(s.recv(2048).decode(errors="replace"), flush=True)
except TimeoutError:
    pass
"""


def send_as_site(pid: int, uid: int, datagram: bytes, host: str, port: int) -> None:
    """An ordinary UDP datagram sent from the network namespace of the container whose process is
    `pid`, as the site's user (no capability): what the site's own code can do."""
    subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "-S", str(uid), "-G", str(uid), "python3", "-c", SEND,
         datagram.hex(), host, str(port)],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip


@contextlib.contextmanager
def udp_received(pid: int, port: int, seconds: float) -> Iterator[Callable[[], str]]:
    """A UDP listener on `port` inside the container whose process is `pid`; the callable yielded
    waits (at most `seconds` from the start) and says what it received ("" for nothing)."""
    listener = subprocess.Popen(
        ["nsenter", "-t", str(pid), "-n", "python3", "-c", LISTEN, str(port), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None
    try:
        assert listener.stdout.readline().strip() == "listening"

        def received() -> str:
            out, _ = listener.communicate(timeout=seconds + 10)
            return out.strip()

        yield received
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def opens(api: docker.APIClient, container: dict[str, Any], host: str, port: int) -> bool:
    """Whether a TCP connection from inside `container` (as its own user) to host:port opens."""
    probe = api.exec_create(
        container["Id"], ["sh", "-c", f"nc -w 2 {host} {port} </dev/null >/dev/null 2>&1; echo rc=$?"]
    )
    return b"rc=0" in api.exec_start(probe["Id"])
