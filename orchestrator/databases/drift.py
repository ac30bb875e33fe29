"""Pure: what drifted between the site services' databases and what the servers hold.

`missing_database`: a site's service names a database (its label and env: `sites.databases`) that
its server does not have, or has only half (logins without the database); `reconcile` makes it
again. `orphan_database`: a database, or logins left without one, that no site's service names and
that is not retired (a service removed by hand, a deploy that failed after provisioning, or one
in flight at the moment of the survey): only reported, since reconcile never locks or drops data.
A retired database is neither: it waits out its retention by design. A server that did not answer
is a warning, not drift: nothing can be said of its databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.databases.engines import Holdings
from orchestrator.sites.databases import Grant, database_name
from orchestrator.sites.service import Service
from orchestrator_contract.results import Drift


@dataclass(frozen=True)
class DatabaseSurvey:
    drift: list[Drift] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # By service name: bytes the site's database holds, where its server said.
    sizes: dict[str, int] = field(default_factory=dict)


def database_drift(services: Sequence[Service], holdings: Sequence[Holdings], deployment: str) -> DatabaseSurvey:
    """`deployment`'s view: another deployment's databases on a shared server are not ours to
    report (nor are logins without a database, whose deployment nothing records)."""
    named: dict[tuple[str, int], Service] = {}
    for service in services:
        grant = service.database
        if grant is not None:
            named[(grant.server, grant.site_id)] = service
    survey = DatabaseSurvey()
    answered = {h.server.name: h for h in holdings if h.error is None}
    for holding in holdings:
        if holding.error is not None:
            survey.warnings.append(f"database server {holding.server.name} did not answer: {holding.error}")
            continue
        for held in holding.held:
            holder = named.get((holding.server.name, held.site_id))
            if holder is not None:
                if held.database and held.bytes is not None:
                    survey.sizes[holder.name] = held.bytes
                continue
            if held.retired_at is None and held.deployment == deployment:
                survey.drift.append(
                    Drift(
                        kind="orphan_database",
                        subject=f"{holding.server.name}/{database_name(held.site_id)}",
                        site_id=held.site_id,
                        detail="a database no site's service names (removed by hand, a deploy that failed after "
                        "provisioning, or one in flight): delete the site in Director to retire it",
                    )
                )
    for (server, site_id), service in sorted(named.items()):
        grant = service.database
        assert grant is not None
        found = answered.get(server)
        if found is None:
            if server not in {h.server.name for h in holdings}:
                survey.warnings.append(f"{service.name}'s database server {server} is not in DATABASE_SERVERS")
            continue
        if not any(held.site_id == site_id and held.database for held in found.held):
            survey.drift.append(_missing(service, grant))
    return survey


def _missing(service: Service, grant: Grant) -> Drift:
    return Drift(
        kind="missing_database",
        subject=service.name,
        site_id=grant.site_id,
        detail=f"its {grant.kind.value} database {grant.name} is not on server {grant.server}: reconcile makes it "
        "again, empty, with the login and password the service holds",
    )
