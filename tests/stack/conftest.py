"""The production stack (compose.yaml) deployed for real, next to the local stack
(deploy/stack-local.env): `scripts/stack.sh deploy` builds what changed and deploys (a stack that is
up and current is reused as it is); the module's sites are removed when it ends, and a stack this
module deployed is purged before and after (its broker volume, secrets and state). Site ids
40100-40999 (40000 is `make stack-demo`'s)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prod import TIMINGS, Prod, connect, env_settings, prod_stack_exists, remove_upgrade_images, run_stack, site_ids
from support import Director, Results, docker_api, terminal_section, wipe_sites
from support.network import node_chain_removed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/stack/" in str(item.path):
            item.add_marker(pytest.mark.stack)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminal_section(terminalreporter, "production stack: measured", TIMINGS)


@pytest.fixture(scope="module")
async def prod() -> AsyncIterator[Prod]:
    settings = env_settings()
    existed = prod_stack_exists(settings["DIRECTOR_STACK"])
    # The stack's netguard (host network) closes this machine to sites' containers: a stack this
    # fixture brings up and down takes that chain with it.
    host_chain = contextlib.ExitStack()
    if not existed:
        host_chain.enter_context(node_chain_removed())
        # Fresh means fresh: a broker volume or secrets left by an earlier stack (another checkout's
        # definitions, say) would otherwise be loaded under this one's.
        run_stack("purge")
    started = time.monotonic()
    run_stack("deploy")
    TIMINGS.append(
        f"scripts/stack.sh deploy ({'reused' if existed else 'fresh'}) -> every service healthy: "
        f"{time.monotonic() - started:.1f}s"
    )
    state = Path(os.environ.get("STACK_STATE_DIR", f"/var/lib/director-stack/{settings['DIRECTOR_STACK']}"))
    secrets = state / "secrets"
    api = docker_api()
    admin_user = (secrets / "rabbitmq_admin_user").read_text()
    async with (
        connect(settings, state, admin_user, (secrets / "rabbitmq_admin_password").read_text()) as admin,
        connect(settings, state, "director", (secrets / "director_amqp_password").read_text()) as director_connection,
    ):
        director = Director(director_connection)
        await director.start()
        results = Results(director_connection, binding="site.*")  # as Director reads them
        await results.start()
        yield Prod(settings, state, api, admin, director, results)
    wipe_sites(api, set(site_ids()))
    root = Path(settings["SITES_ROOT"])
    for site_id in site_ids():
        shutil.rmtree(root / f"site_{site_id:04d}", ignore_errors=True)
    for trashed in (root / ".trash").glob("site_4[0-9][1-9][0-9][0-9]-*"):
        shutil.rmtree(trashed, ignore_errors=True)
    if existed:
        run_stack("deploy")  # back to compose.yaml's images after the upgrade test
    else:
        started = time.monotonic()
        run_stack("purge")
        TIMINGS.append(f"scripts/stack.sh purge: {time.monotonic() - started:.1f}s")
        host_chain.close()
    remove_upgrade_images()


@pytest.fixture
def rabbitmq_scaled() -> Iterator[None]:
    """A test that stops the broker gets it back, healthy, however it ends."""
    yield
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(
            ["docker", "service", "scale", "-d", f"{env_settings()['DIRECTOR_STACK']}_rabbitmq=1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    run_stack("wait")
