"""Error types. Transient errors are retried; permanent ones go to the dead letters at once.

Every error carries a machine-readable `code` that reaches the publisher in a `site.failed` result.
"""

from __future__ import annotations

import uuid


class OrchestratorError(Exception):
    code = "internal_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        site_id: int | None = None,
        event_id: uuid.UUID | None = None,
        version: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # What could be read of an event that failed to parse, so its failure still reaches Director.
        self.site_id = site_id
        self.event_id = event_id
        self.version = version


class PermanentError(OrchestratorError):
    """Retrying cannot help: the event or the swarm's answer is wrong as it stands."""

    code = "permanent_error"


class InvalidEvent(PermanentError):
    """The message is not a valid site event (bytes, JSON, schema, routing key)."""

    code = "invalid_event"


class Unauthenticated(PermanentError):
    code = "unauthenticated"


class ImageNotAllowed(PermanentError):
    code = "image_not_allowed"


class DomainNotAllowed(PermanentError):
    code = "domain_not_allowed"


class UnsafePath(PermanentError):
    code = "unsafe_path"


class DockerRejected(PermanentError):
    """Docker answered 4xx: the spec is wrong, retrying sends the same wrong spec."""

    code = "docker_rejected"


class ServiceFailed(PermanentError):
    """The service did not converge: bad image, crash loop, rolled back."""

    code = "service_failed"


class ConvergeTimeout(PermanentError):
    """The spec is in the swarm but no task ran in time; Docker keeps trying, a replay may help."""

    code = "converge_timeout"
    retryable = True


class TransientError(OrchestratorError):
    """Worth retrying: the world may be different in a moment."""

    code = "transient_error"
    retryable = True


class DomainConflict(TransientError):
    """Another site routes the domain. Usually a move in flight (the other site's update is on its
    way), so it is retried like any transient error, then dead-lettered."""

    code = "domain_conflict"


class DockerUnavailable(TransientError):
    code = "docker_unavailable"


class DockerConflict(TransientError):
    """The service changed under us (update out of sequence, 409): reload and try again."""

    code = "docker_conflict"


class PublishFailed(TransientError):
    code = "publish_failed"
