"""A hostile site against the file access layer: links planted anywhere (to /etc, to /etc/passwd),
FIFOs, sockets and devices, hard links, and a site process swapping a directory for a link
thousands of times while file requests loop. Nothing outside the site is ever read, written,
chmodded, renamed or deleted, and nothing hangs.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import socket
import stat
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
from support import Running, deploy, fresh_site_id, site_event, write_site

from orchestrator.config import Settings
from orchestrator_client import Client
from orchestrator_client.errors import OrchestratorError

SETTINGS = Settings()
HOST_PASSWD = Path("/etc/passwd")


def uid_of(site_id: int) -> int:
    return SETTINGS.site_uid_base + site_id


@pytest.fixture(scope="module")
async def client(stack: Running) -> AsyncIterator[Client]:
    async with await Client.connect(f"amqp://director:director@127.0.0.1:5672/{stack.vhost}") as files:
        yield files


@pytest.fixture(scope="module")
async def site(stack: Running) -> int:
    """A site that is not serving: its service exists (so its files do), no task needed."""
    site_id = fresh_site_id()
    write_site(stack.sites_root, site_id, page="hostile")
    result = await deploy(stack.director, stack.results, site_event("site.created", site_id, 1, serving=False))
    assert result.type == "site.deployed", result
    return site_id


@pytest.fixture
def den(stack: Running, site: int, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The test's own directory in the site, owned by the site's user."""
    path = stack.sites_root / f"site_{site:04d}" / "private" / request.node.name[:60]
    path.mkdir()
    os.chown(path, uid_of(site), uid_of(site))
    yield path


def host_file() -> bytes:
    return HOST_PASSWD.read_bytes()


def host_state() -> dict[str, object]:
    """What a confinement failure would change on the host."""
    etc = Path("/etc")
    return {
        "passwd": hashlib.sha256(HOST_PASSWD.read_bytes()).hexdigest(),
        "passwd_mode": HOST_PASSWD.stat().st_mode,
        "etc_mode": etc.stat().st_mode,
        "etc_names": sorted(os.listdir(etc)),
    }


async def code_of(request: object) -> str:
    with pytest.raises(OrchestratorError) as caught:
        async with asyncio.timeout(10):
            await request  # type: ignore[arg-type]
    return caught.value.code


async def test_links_are_entries_never_ways_out(client: Client, site: int, den: Path) -> None:
    before = host_state()
    rel = f"private/{den.name}"
    (den / "to-etc").symlink_to("/etc")
    (den / "to-passwd").symlink_to("/etc/passwd")
    (den / "up").symlink_to("../../..")

    listed = {e.name: e for e in (await client.files.list(site, rel)).entries}
    assert {n: (e.type, e.target) for n, e in listed.items()} == {
        "to-etc": ("symlink", "/etc"),
        "to-passwd": ("symlink", "/etc/passwd"),
        "up": ("symlink", "../../.."),
    }
    assert (await client.files.stat(site, f"{rel}/to-etc")).entry.type == "symlink"
    codes = [
        await code_of(client.files.list(site, f"{rel}/to-etc")),
        await code_of(client.files.read(site, f"{rel}/to-etc/passwd")),
        await code_of(client.files.read(site, f"{rel}/up/{site}/private")),
        await code_of(client.files.write(site, f"{rel}/to-etc/pwned", b"x")),
        await code_of(client.files.mkdir(site, f"{rel}/to-etc/pwned")),
        await code_of(client.files.chmod(site, f"{rel}/to-passwd", 0o777)),
        await code_of(client.files.delete(site, f"{rel}/to-etc/passwd")),
        await code_of(client.files.rename(site, f"{rel}/to-etc/passwd", f"{rel}/mine")),
        await code_of(client.files.read(site, f"{rel}/to-passwd")),
        await code_of(client.files.usage(site, f"{rel}/to-etc")),
    ]
    assert codes == ["not_a_directory", "unsafe_path", "unsafe_path", "unsafe_path", "unsafe_path",
                     "unsafe_path", "unsafe_path", "unsafe_path", "not_regular", "not_a_directory"]  # fmt: skip

    # Writing over a link replaces the link; deleting or renaming it moves the link itself.
    await client.files.write(site, f"{rel}/to-passwd", b"the site's own")
    assert not (den / "to-passwd").is_symlink() and (den / "to-passwd").read_bytes() == b"the site's own"
    await client.files.rename(site, f"{rel}/to-etc", f"{rel}/moved")
    assert os.readlink(den / "moved") == "/etc"
    assert await client.files.delete(site, f"{rel}/moved", recursive=True) == 1
    assert await client.files.delete(site, f"{rel}/up") == 1
    assert host_state() == before


async def test_fifos_sockets_and_devices_are_listed_but_never_opened(client: Client, site: int, den: Path) -> None:
    rel = f"private/{den.name}"
    os.mkfifo(den / "fifo")  # no writer: an open for reading without O_NONBLOCK would hang forever
    server = socket.socket(socket.AF_UNIX)
    folder = os.open(den, os.O_RDONLY | os.O_DIRECTORY)
    try:
        server.bind(f"/proc/self/fd/{folder}/sock")  # the full path is longer than a socket address
    finally:
        os.close(folder)
    os.mknod(den / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for name in ("fifo", "sock", "null"):
        os.lchown(den / name, uid_of(site), uid_of(site))
    try:
        listed = {e.name: e.type for e in (await client.files.list(site, rel)).entries}
        assert listed == {"fifo": "other", "sock": "other", "null": "other"}
        started = time.monotonic()
        codes = {
            name: [
                await code_of(client.files.read(site, f"{rel}/{name}")),
                await code_of(client.files.write(site, f"{rel}/{name}", b"x")),
                await code_of(client.files.chmod(site, f"{rel}/{name}", 0o600)),
            ]
            for name in listed
        }
        assert codes == {name: ["not_regular"] * 3 for name in listed}
        assert time.monotonic() - started < 5  # nothing hung
        assert (await client.files.stat(site, f"{rel}/fifo")).entry.type == "other"
        archive = b"".join([chunk async for chunk in client.files.archive(site, rel)])
        assert zipfile.ZipFile(io.BytesIO(archive)).namelist() == []  # left out of archives
        assert await client.files.delete(site, f"{rel}/fifo") == 1  # unlinked, never opened
    finally:
        server.close()


async def test_a_hard_linked_file_is_replaced_never_written_through(client: Client, site: int, den: Path) -> None:
    rel = f"private/{den.name}"
    (den / "original").write_bytes(b"another file's content")
    os.link(den / "original", den / "hardlink")
    await client.files.write(site, f"{rel}/hardlink", b"new")
    assert (den / "original").read_bytes() == b"another file's content"
    assert (den / "hardlink").read_bytes() == b"new" and (den / "hardlink").stat().st_nlink == 1


async def test_the_skeleton_cannot_be_deleted_moved_or_replaced(client: Client, site: int) -> None:
    codes = [
        await code_of(client.files.delete(site, "public", recursive=True)),
        await code_of(client.files.delete(site, "private", recursive=True)),
        await code_of(client.files.delete(site, "", recursive=True)),
        await code_of(client.files.rename(site, "public", "private/old")),
        await code_of(client.files.rename(site, "private/x", "public")),
        await code_of(client.files.write(site, "public", b"x")),
    ]
    assert codes == ["unsafe_path"] * 5 + ["is_a_directory"]
    assert (await client.files.stat(site, "public")).entry.type == "dir"


# Flips until the test has seen enough requests (it writes `stop`), so a loaded machine, where
# the requests are slow beside a shell loop, still has them all inside the race.
FLIPPER = """
cd /site/private/race
i=0
while [ ! -e stop ]; do
  mv d real && ln -s /etc d && rm d && mv real d
  mv d real && ln -s / d && rm d && mv real d
  i=$((i+1))
done
echo $i > /site/private/race/flips
"""
RACED_REQUESTS = 100


async def test_a_site_swapping_a_directory_for_a_link_in_a_loop_reaches_nothing_outside(
    client: Client, stack: Running, site: int
) -> None:
    """The race: a process of the site (its uid, its directory mounted at /site) flips d between a
    real directory and a link to /etc or / as fast as it can, while requests that go through d
    loop. Every request either works inside the real d or is refused; the host is untouched."""
    race = stack.sites_root / f"site_{site:04d}" / "private" / "race"
    (race / "d").mkdir(parents=True)
    (race / "d" / "passwd").write_text("the site's own passwd")
    (race / "d" / "x").write_text("x")
    for path in (race, race / "d", race / "d" / "passwd", race / "d" / "x"):
        os.chown(path, uid_of(site), uid_of(site))
    before = host_state()
    host_passwd = host_file()

    api = docker.APIClient(version="auto")
    container = api.create_container(
        SETTINGS.default_image,
        ["sh", "-c", FLIPPER],
        user=f"{uid_of(site)}:{uid_of(site)}",
        network_disabled=True,
        labels={"com.director.managed-by": "orchestrator", "com.director.site-id": str(site)},
        host_config=api.create_host_config(binds={str(stack.sites_root / f"site_{site:04d}"): {"bind": "/site"}}),
    )
    api.start(container)
    outcomes: dict[str, int] = {}
    leaks: list[str] = []
    counted = asyncio.Event()  # RACED_REQUESTS answered

    async def loop(op: str) -> None:
        d = "private/race/d"
        name = uuid.uuid4().hex[:6]
        while not (race / "flips").exists():  # the flipper writes it when done (no Docker call here)
            try:
                if op == "read":
                    data, _ = await client.files.read(site, f"{d}/passwd")
                    if data == host_passwd:
                        leaks.append("read /etc/passwd")
                elif op == "list":
                    names = {e.name for e in (await client.files.list(site, d)).entries}
                    if not all(re.fullmatch(r"passwd|x|[wmr][0-9a-f]{6}", n) for n in names):
                        leaks.append(f"listed {sorted(names)[:5]}")  # /etc's or /'s entries
                elif op == "write":
                    await client.files.write(site, f"{d}/w{name}", b"w")
                elif op == "mkdir":
                    await client.files.mkdir(site, f"{d}/m{name}")
                    await client.files.delete(site, f"{d}/m{name}")
                elif op == "chmod":
                    await client.files.chmod(site, f"{d}/passwd", 0o640)
                elif op == "rename":
                    await client.files.rename(site, f"{d}/x", f"{d}/r{name}")
                    await client.files.rename(site, f"{d}/r{name}", f"{d}/x")
                elif op == "delete":
                    await client.files.write(site, f"{d}/w{name}", b"w")
                    await client.files.delete(site, f"{d}/w{name}")
                elif op == "usage":
                    await client.files.usage(site, "private/race")
                outcomes[f"{op}: ok"] = outcomes.get(f"{op}: ok", 0) + 1
            except OrchestratorError as exc:
                outcomes[f"{op}: {exc.code}"] = outcomes.get(f"{op}: {exc.code}", 0) + 1
            if sum(outcomes.values()) >= RACED_REQUESTS:
                counted.set()

    async def enough() -> None:
        await asyncio.sleep(3)
        await counted.wait()
        (race / "stop").touch()

    ops = ["read", "list", "write", "mkdir", "chmod", "rename", "delete", "usage"]
    try:
        async with asyncio.timeout(120):
            await asyncio.gather(enough(), *(loop(op) for op in ops))
        assert api.wait(container, timeout=10)["StatusCode"] == 0
    finally:
        api.remove_container(container, force=True)

    flips = int((race / "flips").read_text())  # each: d swapped for a link twice (4 renames)
    assert flips >= 10, flips  # the race ran through the requests
    assert leaks == []
    assert host_state() == before
    # Both sides of the race were seen: requests that worked inside d, and requests refused
    # because d was a link at that moment.
    assert any(k.endswith(": ok") for k in outcomes) and any(k.endswith("unsafe_path") for k in outcomes), outcomes
    assert set(outcomes) <= {f"{op}: {code}" for op in ops for code in (
        "ok", "unsafe_path", "not_found", "not_a_directory", "exists", "upload_unknown")}, outcomes  # fmt: skip
