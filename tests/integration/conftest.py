"""The integration suite: one stack per test process (`support.running`), site ids from this
process's share (`support.scope`); every site a test made is removed when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support import Running, fresh_site_id, scope, stack_running, wipe_sites


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with stack_running("test", tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(autouse=True)
def _remove_the_tests_sites(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sites allocated while a test ran are removed after it: later tests are not slowed by them,
    and no test depends on another's leftovers."""
    first = scope.next_site_id()
    yield
    made = set(range(first, scope.next_site_id()))
    if made and "stack" in request.fixturenames:
        wipe_sites(request.getfixturevalue("stack").api, made)


@pytest.fixture
def site_id() -> int:
    """A fresh site id from this process's share."""
    return fresh_site_id()
