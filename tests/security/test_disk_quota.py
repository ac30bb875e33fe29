"""A site fills the disk (issue 20, finding 9): on a sites root that can enforce a limit (a small
btrfs of the module's own, quotas enabled, its own orchestrator with SITE_DISK_LIMIT), the site's
own code writing past its limit is refused by the kernel and the site keeps serving; an upload past
it is answered `disk_quota_exceeded` and leaves nothing behind; another site writes on unaffected;
`orchestrator status` shows each site's usage and limit.

The module costs a vhost, an orchestrator and two sites of its own (about 20 s) on each worker
that runs one of its tests.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from support import SITE_UID_BASE, Running, deploy, fresh_site_id, served, site_event, stack_running, write_site

from harness.stack import btrfs_sites_root
from orchestrator.files import paths
from orchestrator_client import Client
from orchestrator_client.errors import OrchestratorError
from orchestrator_contract.sites import service_name

LIMIT = 8 * 2**20
MiB = 2**20


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with stack_running(
        "quota", tmp_path_factory.mktemp("quota-logs"), sites_root=btrfs_sites_root, site_disk_limit="8Mi"
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def client(stack: Running) -> AsyncIterator[Client]:
    async with await Client.connect(f"amqp://director:director@127.0.0.1:5672/{stack.vhost}") as files:
        yield files


async def serving_site(stack: Running, page: str) -> int:
    """A site whose directory the orchestrator made (a created event not serving yet: a directory
    that was there before would be a plain one, without a limit), then given its files and served."""
    site_id = fresh_site_id()
    made = await deploy(stack.director, stack.results, site_event("site.created", site_id, 1, serving=False))
    assert made.type == "site.deployed", made
    write_site(stack.sites_root, site_id, page=page)
    served_event = site_event("site.updated", site_id, 2)
    result = await deploy(stack.director, stack.results, served_event)
    assert result.type == "site.deployed", result
    await served(f"site{site_id}.test.example.com", page)
    return site_id


def as_the_site(api: docker.APIClient, site_id: int, script: str) -> tuple[int, str]:
    """`sh -c script` inside the site's running task, as the site's own user: its own code."""
    [container] = api.containers(filters={"label": f"com.docker.swarm.service.name={service_name(site_id)}"})
    run = api.exec_create(container["Id"], ["sh", "-c", script])
    output = api.exec_start(run["Id"]).decode(errors="replace")
    return api.exec_inspect(run["Id"])["ExitCode"], output


def disk_of(stack: Running, site_id: int) -> dict[str, int | None]:
    status = stack.orchestrator.cli("status", "-o", "json", "--site", str(site_id))
    assert status.returncode == 0, status.stderr
    [site] = json.loads(status.stdout)["sites"]
    assert site["disk"] is not None, site
    return site["disk"]  # type: ignore[no-any-return]


def leftovers(folder: Path) -> list[str]:
    return [name for name in (p.name for p in folder.iterdir()) if paths.is_temp(name)]


async def test_a_site_cannot_write_past_its_disk_limit_and_keeps_serving(stack: Running, client: Client) -> None:
    greedy = await serving_site(stack, "greedy")
    neighbour = await serving_site(stack, "neighbour")
    assert disk_of(stack, greedy)["limit"] == LIMIT

    # The site's own code: 32 MiB into a limit of 8.
    code, output = as_the_site(stack.api, greedy, "dd if=/dev/zero of=/site/private/fill bs=1M count=32")
    assert code != 0 and "Disk quota exceeded" in output, output
    used = disk_of(stack, greedy)["used"]
    assert used is not None and LIMIT - MiB <= used <= LIMIT, used
    await served(f"site{greedy}.test.example.com", "greedy")

    # Through the file API, with the limit reached: refused, nothing partial, the old file intact.
    public = stack.sites_root / f"site_{greedy:04d}" / "public"
    with pytest.raises(OrchestratorError) as caught:
        await client.files.write(greedy, "public/big.bin", b"x" * 3 * MiB)
    assert caught.value.code == "disk_quota_exceeded", caught.value
    assert not (public / "big.bin").exists() and leftovers(public) == []

    # Room again (the site deletes its fill): an upload running past the limit midway fails the same
    # way, and its temporary file goes with it.
    code, output = as_the_site(stack.api, greedy, "rm /site/private/fill && sync")
    assert code == 0, output
    with pytest.raises(OrchestratorError) as caught:
        await client.files.write(greedy, "public/big.bin", b"y" * 12 * MiB, window=1)
    assert caught.value.code == "disk_quota_exceeded", caught.value
    assert not (public / "big.bin").exists() and leftovers(public) == []
    written = await client.files.write(greedy, "public/small.bin", b"z" * MiB)
    assert written.received == MiB

    # The neighbour has its own limit, untouched by the greedy site's.
    code, output = as_the_site(stack.api, neighbour, "dd if=/dev/zero of=/site/private/own bs=1M count=4 && sync")
    assert code == 0, output
    assert (await client.files.write(neighbour, "public/own.bin", b"n" * 2 * MiB)).received == 2 * MiB
    # The kernel counts at once what it admits, but shows the count after a commit (at most 30 s).
    assert as_the_site(stack.api, neighbour, "sync")[0] == 0
    assert disk_of(stack, neighbour)["used"] >= 6 * MiB  # type: ignore[operator]
    await served(f"site{neighbour}.test.example.com", "neighbour")


async def test_a_site_s_own_subvolumes_and_snapshots_count_against_its_limit(stack: Running) -> None:
    """The escape of full qgroups: anyone may make a subvolume in a directory they can write, and
    its data would count against a qgroup of its own. Done here as the site's user on the host (the
    site's image has no btrfs tool; the kernel asks nothing more of a container)."""
    site_id = await serving_site(stack, "nested")
    site_dir = stack.sites_root / f"site_{site_id:04d}"
    uid = str(SITE_UID_BASE + site_id)

    def as_site_user(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", *command], capture_output=True, text=True
        )

    made = as_site_user("btrfs", "subvolume", "create", str(site_dir / "private" / "nested"))
    assert made.returncode == 0, made.stderr  # the kernel lets the site make one: it must count
    filled = as_site_user("dd", "if=/dev/zero", f"of={site_dir}/private/nested/fill", "bs=1M", "count=32")
    assert filled.returncode != 0 and "Disk quota exceeded" in filled.stderr, filled.stderr
    as_site_user("rm", f"{site_dir}/private/nested/fill")
    snapshot = as_site_user(
        "btrfs", "subvolume", "snapshot", str(site_dir / "private" / "nested"), str(site_dir / "snap")
    )
    assert snapshot.returncode == 0, snapshot.stderr
    filled = as_site_user("dd", "if=/dev/zero", f"of={site_dir}/snap/fill", "bs=1M", "count=32")
    assert filled.returncode != 0 and "Disk quota exceeded" in filled.stderr, filled.stderr
    assert as_site_user("sync").returncode == 0
    used = disk_of(stack, site_id)["used"]
    assert used is not None and LIMIT - MiB <= used <= LIMIT, used  # all of it counted as the site's


async def test_status_shows_usage_and_limit_in_its_table_and_a_delete_moves_the_subvolume_to_the_trash(
    stack: Running,
) -> None:
    site_id = await serving_site(stack, "counted")
    table = stack.orchestrator.cli("status", "--site", str(site_id))
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert "DISK" in header and "/8.0Mi" in row, table.stdout
    assert "SITE_DISK_LIMIT is not enforced" not in table.stdout
    deleted = await deploy(stack.director, stack.results, site_event("site.deleted", site_id, 3))
    assert deleted.type == "site.removed", deleted
    [trashed] = (stack.sites_root / ".trash").glob(f"site_{site_id:04d}-*")
    assert (trashed / "public" / "index.html").read_text() == "counted"
