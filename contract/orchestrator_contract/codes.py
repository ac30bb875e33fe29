"""The machine-readable codes of every failure the orchestrator reports: a `site.failed`'s
`error.code`, a terminal's `error` update, a file request's error reply."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every code a `site.failed` result may carry (part of the published contract)."""

    INTERNAL_ERROR = "internal_error"
    PERMANENT_ERROR = "permanent_error"
    INVALID_EVENT = "invalid_event"
    UNAUTHENTICATED = "unauthenticated"
    IMAGE_NOT_ALLOWED = "image_not_allowed"
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    DOMAIN_CONFLICT = "domain_conflict"
    UNSAFE_PATH = "unsafe_path"
    NOT_FOUND = "not_found"
    DOCKER_REJECTED = "docker_rejected"
    SERVICE_FAILED = "service_failed"
    RUN_SCRIPT_FAILED = "run_script_failed"
    NOT_LISTENING = "not_listening"
    IMAGE_NOT_FOUND = "image_not_found"
    NO_RUN_SCRIPT = "no_run_script"
    IMAGE_BUILD_FAILED = "image_build_failed"
    NOT_ROUTED = "not_routed"
    CONVERGE_TIMEOUT = "converge_timeout"
    TRANSIENT_ERROR = "transient_error"
    DOCKER_UNAVAILABLE = "docker_unavailable"
    DOCKER_ERROR = "docker_error"
    DOCKER_CONFLICT = "docker_conflict"
    PUBLISH_FAILED = "publish_failed"
    BROKER_SETUP = "broker_setup"
    UNKNOWN_SESSION = "unknown_session"
    TERMINAL_LIMIT = "terminal_limit"
    TERMINAL_BUSY = "terminal_busy"
    # site files and logs (`director.files`): the reply's `error.code`
    INVALID_REQUEST = "invalid_request"
    SITE_NOT_FOUND = "site_not_found"
    NOT_A_DIRECTORY = "not_a_directory"
    IS_A_DIRECTORY = "is_a_directory"
    EXISTS = "exists"
    NOT_EMPTY = "not_empty"
    NOT_REGULAR = "not_regular"
    TOO_LARGE = "too_large"
    PRECONDITION_FAILED = "precondition_failed"
    UPLOAD_UNKNOWN = "upload_unknown"
    BUSY = "busy"
    IO_ERROR = "io_error"
    DISK_QUOTA_EXCEEDED = "disk_quota_exceeded"
