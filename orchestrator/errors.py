"""Error types. Each carries a machine-readable `code` that reaches the publisher in a `site.failed`.

Three paths, decided by the type:
- transient: retried in process, then through the delayed-retry queue, then dead-lettered;
- permanent: dead-lettered at once, for an operator to inspect and replay;
- the site does not serve (`SiteNotServing`): the event was applied as asked, but the site's own
  content keeps it from answering (its run.sh, its port, its image). The owner hears why; there
  is nothing for an operator to replay, so nothing is dead-lettered.
"""

from __future__ import annotations

import uuid

from orchestrator_contract.codes import ErrorCode


class OrchestratorError(Exception):
    code = ErrorCode.INTERNAL_ERROR
    retryable = False
    dead_letter = True
    rolled_back = False
    applied_version: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
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

    code = ErrorCode.PERMANENT_ERROR


class InvalidEvent(PermanentError):
    """The message is not a valid event (bytes, JSON, schema, routing key)."""

    code = ErrorCode.INVALID_EVENT


class Unauthenticated(PermanentError):
    code = ErrorCode.UNAUTHENTICATED


class NotAdmitted(PermanentError):
    """The operator's policy refuses what the site asks for (`sites.admission`); each refusal is
    a subclass with its own code."""


class ImageNotAllowed(NotAdmitted):
    code = ErrorCode.IMAGE_NOT_ALLOWED


class DomainNotAllowed(NotAdmitted):
    code = ErrorCode.DOMAIN_NOT_ALLOWED


class DomainConflict(PermanentError):
    """Another site routes the domain. A move in flight (the other site's update on its way) is
    waited for briefly; past that the claim fails at once. A replay may help once the other site
    lets go, hence retryable."""

    code = ErrorCode.DOMAIN_CONFLICT
    retryable = True


class UnsafePath(PermanentError):
    code = ErrorCode.UNSAFE_PATH


class NotFound(PermanentError):
    """The event names a site the swarm does not hold (e.g. a restart of a deleted site)."""

    code = ErrorCode.NOT_FOUND


class TerminalRefused(PermanentError):
    """A terminal command that cannot be carried out (unknown session, no such site, the per-site
    limit, Docker unavailable): the session's owner hears why at once. A replay minutes later
    would open a terminal nobody watches, so it is never dead-lettered."""

    code = ErrorCode.INTERNAL_ERROR
    dead_letter = False


class ImageBuildFailed(PermanentError):
    """The site's image recipe did not build (a package that is not there, a timeout): the owner
    hears why with the build log's last lines; an operator has nothing to replay."""

    code = ErrorCode.IMAGE_BUILD_FAILED
    dead_letter = False


class InvalidRequest(InvalidEvent):
    """A file request that is not valid (bytes, JSON, schema, routing key, a bad mode, no usable
    `reply_to`). Answered when it can be, and dead-lettered with the reason."""

    code = ErrorCode.INVALID_REQUEST


class FileRefused(PermanentError):
    """A file request that cannot be carried out as asked (`code` says why): the requester hears
    it in the reply at once; there is nothing for an operator to replay."""

    code = ErrorCode.IO_ERROR
    dead_letter = False


class DatabaseKindChange(NotAdmitted):
    """The site asks for another kind of database than the one it has: data does not move between
    engines by itself. Director removes the database first (it is dropped after the trash's
    retention, a dump kept) and then asks for the other kind."""

    code = ErrorCode.DATABASE_KIND_CHANGE


class DatabaseNotOffered(NotAdmitted):
    """No database server of the kind the site asks for is configured (DATABASE_SERVERS)."""

    code = ErrorCode.DATABASE_NOT_OFFERED


class DatabaseError(PermanentError):
    """A database server refused what the orchestrator asked of it as its admin (a privilege the
    operator did not grant, a name taken by hand): retrying sends the same statement."""

    code = ErrorCode.DATABASE_ERROR


class DatabaseRefused(PermanentError):
    """A database request that cannot be carried out as asked (`code` says why): the requester
    hears it in the reply at once; there is nothing for an operator to replay."""

    code = ErrorCode.DATABASE_ERROR
    dead_letter = False


class DockerRejected(PermanentError):
    """Docker answered 4xx: the spec is wrong, retrying sends the same wrong spec."""

    code = ErrorCode.DOCKER_REJECTED


class ServiceFailed(PermanentError):
    """The service did not converge for a reason that is not the site's own content."""

    code = ErrorCode.SERVICE_FAILED


class ConvergeTimeout(PermanentError):
    """The spec is in the swarm but its tasks did not become healthy in time; a replay may help."""

    code = ErrorCode.CONVERGE_TIMEOUT
    retryable = True


class NotRouted(PermanentError):
    """The site's tasks are healthy but Traefik did not serve it in time."""

    code = ErrorCode.NOT_ROUTED
    retryable = True


class SiteNotServing(PermanentError):
    """Applied as asked, but the site's own content keeps it from answering. `rolled_back`: an
    update failed and the swarm went back to the previous version, which keeps serving."""

    code = ErrorCode.SERVICE_FAILED
    dead_letter = False

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        rolled_back: bool = False,
        applied_version: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.rolled_back = rolled_back
        # The version the swarm holds now: the event's own, or the previous one after a rollback.
        self.applied_version = applied_version


class TransientError(OrchestratorError):
    """Worth retrying: the world may be different in a moment."""

    code = ErrorCode.TRANSIENT_ERROR
    retryable = True


class DockerUnavailable(TransientError):
    code = ErrorCode.DOCKER_UNAVAILABLE


class BrokerUnavailable(TransientError):
    """The broker cannot be reached (refused, unreachable, credentials refused, timed out)."""

    code = ErrorCode.TRANSIENT_ERROR


class DockerConflict(TransientError):
    """The service changed under us (update out of sequence, 409): reload and try again."""

    code = ErrorCode.DOCKER_CONFLICT


class BrokerSetupError(PermanentError):
    """The broker lacks what its definitions should have given it (Director's exchanges): the
    orchestrator cannot start until an operator loads them."""

    code = ErrorCode.BROKER_SETUP


class PromiseNotKept(Exception):
    """A promise docs/security.md makes (a `nosuid,nodev` sites root, an enforced disk limit) that
    this node cannot keep: the orchestrator does not start, and says which."""


class DatabaseUnavailable(TransientError):
    """A database server did not answer (down, restarting, unreachable)."""

    code = ErrorCode.DATABASE_UNAVAILABLE


class PublishFailed(TransientError):
    code = ErrorCode.PUBLISH_FAILED
