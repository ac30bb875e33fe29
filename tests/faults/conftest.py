"""Fault tests get a stack per module (`support.running`), tuned to ride out a 20 s Docker outage,
listening on the durable results queue (results published while the broker restarts are not
missed), and print their loss counts at the end of the run. They restart RabbitMQ and dockerd for
the whole machine, so they run alone, after everything else (`make test`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from scenario import LOSS_REPORT
from support import SITE_RESULTS, Running, stack_running


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LOSS_REPORT:
        terminalreporter.section("fault tests: loss counts")
        for line in LOSS_REPORT:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="module")
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    # By default enough delayed retries to ride out a Docker outage of well over 20 s;
    # a test module can set ORCHESTRATOR_SETTINGS to change that.
    settings = {"max_attempts": "30", "retry_budget_seconds": "3", "retry_delay_seconds": "2",
                "converge_timeout_seconds": "90"}  # fmt: skip
    settings |= getattr(request.module, "ORCHESTRATOR_SETTINGS", {})
    name = f"faults-{request.module.__name__.rsplit('.', 1)[-1]}"
    async with stack_running(name, tmp_path_factory.mktemp("logs"), results_queue=SITE_RESULTS, **settings) as running:
        yield running
