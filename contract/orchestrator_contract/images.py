"""Docker image references: syntax (part of the contract) and policy (which images may run)."""

from __future__ import annotations

import re

# A Docker reference as the distribution spec defines it: [registry[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?",
    re.ASCII,
)
MAX_LENGTH = 255


def parse_reference(value: str) -> str:
    """Return `value` if it is a well-formed image reference, else raise ValueError."""
    if not value or len(value) > MAX_LENGTH or not _REFERENCE.fullmatch(value):
        raise ValueError("not a valid Docker image reference")
    return value


def repository_of(reference: str) -> str:
    """The reference without its tag and digest: `reg:5000/a/b:1@sha256:...` -> `reg:5000/a/b`."""
    name = reference.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}"


def in_registry(reference: str, registry: str) -> str:
    """`reference` with a registry: a name without one (`director/base:latest`, `nginx`) is read in
    `registry`, never on Docker Hub; a name whose first part is a host (`reg:5000/...`,
    `registry.example/...`, `localhost/...`) is kept."""
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"{registry}/{reference}"


def with_default_tag(reference: str) -> str:
    last = reference.rsplit("/", 1)[-1]
    return reference if (":" in last or "@" in reference) else f"{reference}:latest"


def is_pinned(reference: str) -> bool:
    """Written in full: `registry[:port]/path:tag@sha256:<digest>`. A registry of its own (no
    implicit Docker Hub), a tag (the name it is known by) and the digest of the bytes that run."""
    name, at, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    last = name.rsplit("/", 1)[-1]
    try:
        parse_reference(reference)
    except ValueError:
        return False
    has_registry = "." in first or ":" in first or first == "localhost"
    return bool(at and digest and slash and rest and has_registry and ":" in last)


def known_names(reference: str) -> tuple[str, ...]:
    """The names a default image is asked for by: `reg:5000/director/base:latest@sha256:...` is
    also `reg:5000/director/base:latest` and `director/base:latest` (as Director names it)."""
    name = reference.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    names = [reference, with_default_tag(name)]
    if slash and ("." in first or ":" in first or first == "localhost"):
        names.append(with_default_tag(rest))
    return tuple(dict.fromkeys(names))
