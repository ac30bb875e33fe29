"""The promises the security docs make of a node, kept or refused (round four, item 11): a site's
container runs with `no-new-privileges` on a `nosuid,nodev` sites root, and a set disk limit is
enforced. On any node, a site's entry program refuses to start a site where its container breaks
either promise, saying which; the orchestrator refuses to start on a sites root that breaks one
(it only logged it, and ran on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from support import ROOT, orchestrator_env, scope

from orchestrator.config import Settings
from orchestrator.sites.scripts import RUN_SCRIPT

SETTINGS = Settings()


def entry(api: docker.APIClient, site_dir: Path, security_opt: list[str] | None = None) -> tuple[int, str]:
    """The site's entry program run as a site task runs it (the site's uid, /site its directory)."""
    (site_dir / "run.sh").write_text("echo site-started\n")
    host = api.create_host_config(binds={str(site_dir): {"bind": "/site"}}, security_opt=security_opt)
    container = api.create_container(
        SETTINGS.default_image, ["/bin/sh", "-c", RUN_SCRIPT], user="65534:65534", host_config=host,
        labels={"com.director.managed-by": "orchestrator", "com.director.site-id": str(scope.FIRST_SITE)},
    )  # fmt: skip
    try:
        api.start(container)
        code = api.wait(container, timeout=30)["StatusCode"]
        return code, api.logs(container).decode(errors="replace").strip()
    finally:
        api.remove_container(container, force=True)


def test_a_site_is_not_started_where_its_container_breaks_a_promise(
    api: docker.APIClient, sites_root: Path, tmp_path: Path
) -> None:
    kept = sites_root / f"promises-{scope.NAME}"
    kept.mkdir(exist_ok=True)
    try:
        assert entry(api, kept) == (0, "orchestrator: starting /site/run.sh\nsite-started")
        code, said = entry(api, tmp_path)  # not the sites root's nosuid,nodev mount
        assert code == 78 and "/site is not mounted nosuid" in said and "site-started" not in said, said
        code, said = entry(api, kept, ["no-new-privileges=false"])  # a node whose engine does not set it
        assert code == 78 and "without no-new-privileges" in said and "site-started" not in said, said
    finally:
        for leftover in kept.iterdir():
            leftover.unlink()
        kept.rmdir()


@pytest.mark.parametrize("broken", ["nosuid,nodev", "disk limit"])
def test_the_orchestrator_does_not_start_where_a_promise_cannot_be_kept(broken: str, tmp_path: Path) -> None:
    """A sites root without nosuid,nodev; a disk limit on a sites root that cannot enforce one
    (a nosuid,nodev tmpfs: no btrfs quotas)."""
    root = tmp_path / "sites"
    root.mkdir()
    overrides = {}
    if broken == "disk limit":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=8m", "tmpfs", str(root)], check=True)
        overrides["site_disk_limit"] = "64Mi"
    try:
        env = {**os.environ, **orchestrator_env(f"promises-{scope.NAME}", root, **overrides)}
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        if broken == "disk limit":
            subprocess.run(["umount", "-l", str(root)], check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 78, said[-2000:]
    assert "refusing to start" in said and (
        "nosuid,nodev" in said if broken == "nosuid,nodev" else "SITE_DISK_LIMIT" in said
    )
