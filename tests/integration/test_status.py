"""`orchestrator status` shows a hand edit as drift; `reconcile --yes` puts the applied spec back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
from support import Director, OrchestratorProcess, Results, deploy, eventually, served, site_event, write_site


def status_of(orchestrator: OrchestratorProcess, site_id: int) -> dict[str, Any]:
    """The site as `status -o json --site` shows it; the command exits 1 when it has drifted."""
    done = orchestrator.cli("status", "-o", "json", "--site", str(site_id))
    (site,) = json.loads(done.stdout)["sites"]
    assert done.returncode == (1 if site["drift"] else 0), done.stderr
    return site  # type: ignore[no-any-return]


def env_of(api: docker.APIClient, name: str) -> list[str]:
    return api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []


async def test_a_hand_edit_shows_as_drift_and_reconcile_restores_it(
    director: Director,
    results: Results,
    sites_root: Path,
    site_id: int,
    api: docker.APIClient,
    orchestrator: OrchestratorProcess,
) -> None:
    host = f"drift{site_id}.example.com"
    write_site(sites_root, site_id, page=f"drift page {site_id}")
    assert (
        await deploy(director, results, site_event("site.created", site_id, 3, domains=[host]))
    ).type == "site.deployed"
    name = f"site_{site_id:04d}"

    before = status_of(orchestrator, site_id)
    assert before["drift"] == [] and before["version"] == 3 and before["health"] == "healthy"
    assert before["domains"] == [host] and (before["running"], before["desired"]) == (1, 1)

    # Somebody edits the service by hand, as `docker service update --env-add` would.
    raw = api.inspect_service(name)
    template = raw["Spec"]["TaskTemplate"]
    template["ContainerSpec"]["Env"] = [*template["ContainerSpec"]["Env"], "EDITED_BY_HAND=1"]
    api.update_service(raw["ID"], raw["Version"]["Index"], task_template=template, name=name,
                       labels=raw["Spec"]["Labels"], mode=raw["Spec"]["Mode"],
                       update_config=raw["Spec"]["UpdateConfig"], rollback_config=raw["Spec"]["RollbackConfig"],
                       endpoint_spec=raw["Spec"]["EndpointSpec"])  # fmt: skip
    edited = status_of(orchestrator, site_id)
    assert [d["kind"] for d in edited["drift"]] == ["edited"], edited

    dry = orchestrator.cli("reconcile", "--dry-run")  # exits 1: it found drift
    assert dry.returncode == 1 and f"[would] edited: restore {name}" in dry.stdout, dry.stdout
    assert "EDITED_BY_HAND=1" in env_of(api, name)  # a dry run changes nothing

    done = orchestrator.cli("reconcile", "--yes")
    assert done.returncode == 0 and f"[done] edited: restore {name}" in done.stdout, done.stdout + done.stderr

    assert "EDITED_BY_HAND=1" not in env_of(api, name)
    await eventually(lambda: status_of(orchestrator, site_id)["drift"] == [], timeout=30)
    await served(host, f"drift page {site_id}")


async def test_a_site_directory_without_a_service_is_reported_never_removed(
    sites_root: Path, site_id: int, orchestrator: OrchestratorProcess
) -> None:
    stray = write_site(sites_root, site_id, page="nobody serves me")
    done = orchestrator.cli("status")
    assert done.returncode == 1  # the stray directory is drift
    assert f"unmanaged_dir: site_{site_id:04d}" in done.stdout
    assert orchestrator.cli("reconcile", "--yes").returncode == 0
    assert (stray / "public" / "index.html").read_text() == "nobody serves me"
