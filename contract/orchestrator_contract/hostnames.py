"""RFC 1123 host names: the only strings that ever reach a Traefik rule.

`Hostname` instances are produced by `parse_hostname` alone, so a function that accepts a
`Hostname` knows it holds lower-case letters, digits, hyphens and dots (plus a leading ``*.``
for a syntactically valid wildcard, which policy refuses unless a setting allows it).
"""

from __future__ import annotations

import ipaddress
import re

MAX_LENGTH = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


class Hostname(str):
    """A validated, lower-cased host name. Build it with `parse_hostname`."""

    __slots__ = ()

    @property
    def is_wildcard(self) -> bool:
        return self.startswith("*.")

    @property
    def is_ip(self) -> bool:
        """An IPv4 literal, including the short and hex forms resolvers accept (127.1, 0x7f.0.0.1).

        No top-level domain is numeric (RFC 3696), so a numeric last label means an address.
        """
        try:
            ipaddress.ip_address(self)
        except ValueError:
            last = self.rsplit(".", 1)[-1]
            return last.isdigit() or last.startswith("0x")
        return True


def parse_hostname(value: str) -> Hostname:
    """Return `value` as a `Hostname`, or raise ValueError saying what is wrong with it."""
    if not isinstance(value, str):
        raise ValueError("a host name must be a string")
    if not value:
        raise ValueError("a host name must not be empty")
    if not value.isascii():
        raise ValueError("a host name must be ASCII (use punycode, xn--, for international names)")
    name = value.lower()
    if len(name) > MAX_LENGTH:
        raise ValueError(f"a host name is at most {MAX_LENGTH} characters")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        raise ValueError("a host name needs at least two labels (name.tld)")
    for label in labels:
        if not label:
            raise ValueError("a host name has no empty labels (no leading, trailing or double dots)")
        if len(label) > 63:
            raise ValueError("a host name label is at most 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError("a host name label holds only letters, digits and inner hyphens")
    return Hostname(name)
