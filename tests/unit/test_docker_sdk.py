"""The Docker SDK's private APIClient methods that swarm/ calls (services.last_logs, logs.ServiceLogs):
pyproject.toml bounds the SDK below its next major and the lock pins it; this says at once, with
`make lock`'s next upgrade, if one of them went or changed its parameters."""

from __future__ import annotations

import inspect

import docker

PRIVATE = {
    "_get": ["self"],  # wrapped: (self, *args, **kwargs)
    "_url": ["self", "pathfmt"],
    "_raise_for_status": ["self", "response"],
    "_get_result_tty": ["self", "stream", "res", "is_tty"],
    "_multiplexed_response_stream_helper": ["self", "response"],
}


def test_the_private_methods_swarm_calls_are_there_as_called() -> None:
    for name, leading in PRIVATE.items():
        method = getattr(docker.APIClient, name, None)
        assert callable(method), f"docker {docker.__version__}: APIClient.{name} is gone"
        parameters = list(inspect.signature(method).parameters)
        assert parameters[: len(leading)] == leading, f"docker {docker.__version__}: APIClient.{name}{parameters}"
