"""The cluster tests (`make test-cluster`): the local stack's manager and two workers of
scripts/cluster.sh, real engines joined to the machine's swarm. They are not part of `make test`:
they drain and kill nodes, which would move the sites of tests running beside them. Without the
workers up they are skipped, saying how to run them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from figures import MEASURED
from support import Running, stack_running, terminal_section

STATE = Path("/run/director-cluster")
# The node label this module's sites are placed by (scripts/cluster.sh puts it on every node):
# not the stack's own, so sites of tests running beside this one never land on a worker it kills.
LABEL = os.environ.get("CLUSTER_TEST_LABEL", "director.cluster-test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers_up = all((STATE / f"w{i}.sock").exists() for i in (1, 2))
    for item in items:
        if "tests/cluster/" in str(item.path):
            item.add_marker(pytest.mark.cluster)
            if not workers_up:
                item.add_marker(pytest.mark.skip(reason="no test cluster: make test-cluster brings one up"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminal_section(terminalreporter, "cluster: measured", MEASURED)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """The suite's one orchestrator, placing sites by the cluster's own label."""
    # Metrics every 2 s, merged from the samples of the collectors test_cluster.py runs on the
    # workers, as compose runs one on every node (it collects nothing itself: no collector runs
    # for the manager's sites, which are reported `unmeasured`).
    metrics = {"metrics_seconds": "2", "metrics_collector": "false"}
    async with stack_running("cluster", tmp_path_factory.mktemp("logs"), site_node_label=LABEL, **metrics) as running:
        yield running
