"""Docker's answers become our error types: what is retried, reloaded, or refused for good."""

from __future__ import annotations

from types import SimpleNamespace

import docker.errors
import pytest

from orchestrator.errors import DockerConflict, DockerRejected, TransientError
from orchestrator.sites.rollout import timestamp
from orchestrator.swarm.client import map_api_error as _map_api_error
from orchestrator.swarm.tombstones import tombstone_name
from orchestrator_contract.sites import MAX_VERSION


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    return docker.errors.APIError("boom", response=SimpleNamespace(status_code=status), explanation=explanation)


@pytest.mark.parametrize(
    ("status", "explanation", "expected"),
    [
        (500, "rpc error: code = Unknown desc = update out of sequence", DockerConflict),
        (409, "name conflicts with an existing object", DockerConflict),
        (404, "network director-sites not found", DockerRejected),
        (500, "internal error", TransientError),
        (503, "this node is not a swarm manager", TransientError),
        (400, "invalid mount config", DockerRejected),
    ],
)
def test_api_errors_map_to_retry_reload_or_refusal(status: int, explanation: str, expected: type) -> None:
    error = _map_api_error(api_error(status, explanation))
    assert type(error) is expected
    assert explanation in str(error)


def test_conflicts_are_transient_and_rejections_are_not() -> None:
    assert isinstance(_map_api_error(api_error(409, "x")), TransientError)
    assert not isinstance(_map_api_error(api_error(400, "x")), TransientError)


def test_docker_timestamps_with_nanoseconds_parse() -> None:
    assert timestamp("2026-01-01T00:00:01.123456789Z") == pytest.approx(1767225601.123456789)
    assert timestamp("") == 0.0


def test_tombstone_names_fit_dockers_64_characters_for_any_accepted_version() -> None:
    # A name past 64 characters would make the site undeletable: every delete would fail.
    longest = tombstone_name(2**31 - 1, MAX_VERSION)
    assert len(longest) <= 64
    assert tombstone_name(1, 1) == "orchestrator-tombstone-site_0001-v1"
