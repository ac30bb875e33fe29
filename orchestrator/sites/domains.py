"""Who may route which host names, in one place (pure).

A claim is a site's host name. A plain name owns itself; a wildcard ``*.S`` owns ``S`` and every
name under it (Traefik's rule for it matches one label, but what lives under a site's zone is
that site's). Two claims overlap when they own a name in common; overlapping claims of two sites
are a conflict, whatever Traefik would rank first.

A claim is recorded on the service as labels, so the swarm itself answers "who holds what"
with a few label-filtered lookups whose cost does not grow with the number of sites:
``com.director.host.<claim>`` for each claim, ``com.director.zone.<P>`` for each strict ancestor
``P`` (of two labels or more) of the claim's base name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.labels import HOST_CLAIM, ZONE_CLAIM


def base(claim: str) -> str:
    """The name a claim is about: ``S`` for ``*.S``, the name itself otherwise."""
    return claim[2:] if claim.startswith("*.") else claim


def under(name: str, zone: str) -> bool:
    """`name` lies strictly under `zone` (``a.b.example.com`` under ``example.com``)."""
    return name.endswith("." + zone)


def ancestors(name: str) -> list[str]:
    """Strict ancestors of two labels or more, nearest first: a.b.example.com -> b.example.com, example.com."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


def overlaps(a: str, b: str) -> bool:
    """Whether claims `a` and `b` own a name in common."""
    wild_a, wild_b = a.startswith("*."), b.startswith("*.")
    if not wild_a and not wild_b:
        return a == b
    if wild_a and wild_b:
        s, t = base(a), base(b)
        return s == t or under(s, t) or under(t, s)
    zone, name = (base(a), b) if wild_a else (base(b), a)
    return name == zone or under(name, zone)


def claim_labels(claims: Iterable[str]) -> dict[str, str]:
    """The labels recording `claims` on their service."""
    labels: dict[str, str] = {}
    for claim in claims:
        labels[HOST_CLAIM + claim] = ""
        for zone in ancestors(base(claim)):
            labels[ZONE_CLAIM + zone] = ""
    return labels


def lookup_labels(claim: str) -> list[str]:
    """Label keys whose holders are every service with a claim overlapping `claim` (a superset:
    check each holder's claims with `overlaps`)."""
    name = base(claim)
    covering = [HOST_CLAIM + "*." + zone for zone in (name, *ancestors(name))]
    if claim.startswith("*."):
        return [*covering, HOST_CLAIM + name, ZONE_CLAIM + name]
    return [HOST_CLAIM + name, *covering]


def lock_keys(claims: Iterable[str]) -> tuple[set[str], set[str]]:
    """(exclusive, shared) lock keys for checking and recording `claims` at once.

    Two overlapping claims always meet on a key that one of them takes exclusively (the base
    name of the wider one), while siblings (a.example.com, b.example.com) only share their
    ancestors, so unrelated sites are checked concurrently.
    """
    exclusive = {base(claim) for claim in claims}
    shared = {zone for claim in claims for zone in ancestors(base(claim))} - exclusive
    return exclusive, shared


@dataclass(frozen=True)
class Claims:
    """A site's domain claims, read once (at admission): the labels recording them on its service,
    the locks under which they are checked and recorded, the label keys of every possible rival."""

    hosts: tuple[str, ...]
    labels: dict[str, str]
    exclusive: frozenset[str]
    shared: frozenset[str]
    lookup: tuple[str, ...]

    def clashes(self, holders: Mapping[str, Iterable[str]], own: str) -> list[str]:
        """ "<domains> already routed to <service>" for every other service (of `holders`, from a
        `lookup`) whose claims overlap ours."""
        taken = []
        for other, labels in holders.items():
            if other == own:
                continue
            theirs = [key[len(HOST_CLAIM) :] for key in labels if key.startswith(HOST_CLAIM)]
            clashes = sorted({mine for mine in self.hosts for claim in theirs if overlaps(mine, claim)})
            if clashes:
                taken.append(f"{', '.join(clashes)} already routed to {other}")
        return taken


def claims_of(hosts: Sequence[str]) -> Claims:
    exclusive, shared = lock_keys(hosts)
    lookup = tuple(dict.fromkeys(key for host in hosts for key in lookup_labels(host)))
    return Claims(tuple(hosts), claim_labels(hosts), frozenset(exclusive), frozenset(shared), lookup)


def reserved_by(claim: str, reserved: Iterable[str]) -> str | None:
    """The reserved name (reserving itself and everything under it) that `claim` touches, if any."""
    for name in reserved:
        if overlaps(claim, "*." + name):
            return name
    return None


class ClaimIndex:
    """The swarm's claims in memory: service name -> its claim labels, and label -> holders.

    Answers `lookup_labels` queries without asking Docker, so a conflict check costs the same
    with ten sites or ten thousand. Filled from the services' own labels (the truth); the owner
    keeps it current.
    """

    def __init__(self) -> None:
        self._by_service: dict[str, frozenset[str]] = {}
        self._holders: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_service)

    def replace(self, service: str, labels: Iterable[str]) -> None:
        """Record `service`'s claims from its labels (non-claim labels are ignored)."""
        self.remove(service)
        keys = frozenset(k for k in labels if k.startswith((HOST_CLAIM, ZONE_CLAIM)))
        if keys:
            self._by_service[service] = keys
            for key in keys:
                self._holders.setdefault(key, set()).add(service)

    def remove(self, service: str) -> None:
        for key in self._by_service.pop(service, ()):
            holders = self._holders[key]
            holders.discard(service)
            if not holders:
                del self._holders[key]

    def clear(self) -> None:
        self._by_service.clear()
        self._holders.clear()

    def holders(self, label_keys: Iterable[str]) -> dict[str, frozenset[str]]:
        """Every service holding one of `label_keys`, with all its claim labels."""
        names = {name for key in label_keys for name in self._holders.get(key, ())}
        return {name: self._by_service[name] for name in sorted(names)}
