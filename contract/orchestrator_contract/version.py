"""The contract's version: on the wire and in the published documents.

`VERSION` is this package's version (`pyproject.toml` reads it from here). Both sides put it on
every message they publish, as the AMQP header `contract-version` (`HEADER`); the AsyncAPI
document's `info.version` and every JSON Schema in `schemas/` carry it too. What may change within
a major version: docs/contract.md#versions; what changed in each: CHANGELOG.md.
"""

from __future__ import annotations

VERSION = "1.0.0"
HEADER = "contract-version"
MAJOR = int(VERSION.split(".", 1)[0])


def major_of(value: object) -> int | None:
    """The major version a header value names (`"1.4.0"` -> 1), None when it names none."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        return None
    head = text.split(".", 1)[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 6 else None


def compatible(value: object) -> bool:
    """Whether a message whose `contract-version` header is `value` (None: absent) may be read."""
    return value is None or major_of(value) == MAJOR
