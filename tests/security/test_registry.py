"""The sites' image registry is closed to anyone without its credential (round four, item 4): it
answered an anonymous `DELETE` of a manifest with 404 (not 401) and listed its catalog to anyone,
so whoever reached it could delete another site's images (its tasks could no longer be
rescheduled), push a tag that image garbage collection would act on, or pull every site's private
images. Now every request needs the credential the orchestrator's Docker client holds (pushes,
builds, service creates; the swarm hands it to the node that pulls): anonymous or with a wrong
password, nothing is listed, read, written or deleted, and the manifest an attacker aimed at is
still there. That the orchestrator itself still builds, pushes, runs and deletes images with it is
tests/integration/test_images.py's (and tests/cluster's, where workers pull)."""

from __future__ import annotations

import pytest
import requests
from support import registry_auth

from orchestrator.config import Settings

API = Settings().registry_api_url.rstrip("/")
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# A default image every node runs: what an attacker would delete to stop sites being rescheduled.
REPOSITORY, TAG = "director/base", "latest"


def real_digest() -> str:
    response = requests.head(
        f"{API}/v2/{REPOSITORY}/manifests/{TAG}", headers={"Accept": MANIFEST}, auth=registry_auth(), timeout=10
    )
    assert response.status_code == 200, response.status_code
    return response.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("who", ["anonymous", "a wrong password"])
def test_the_registry_lists_reads_writes_and_deletes_nothing_without_its_credential(who: str) -> None:
    auth = None if who == "anonymous" else ("orchestrator", "not-the-password")
    digest = real_digest()
    attempts = {
        "catalog": requests.get(f"{API}/v2/_catalog", auth=auth, timeout=10),
        "tags": requests.get(f"{API}/v2/{REPOSITORY}/tags/list", auth=auth, timeout=10),
        "pull a manifest": requests.get(
            f"{API}/v2/{REPOSITORY}/manifests/{TAG}", headers={"Accept": MANIFEST}, auth=auth, timeout=10
        ),
        "pull a blob": requests.get(f"{API}/v2/{REPOSITORY}/blobs/{digest}", auth=auth, timeout=10),
        "start a push": requests.post(f"{API}/v2/{REPOSITORY}/blobs/uploads/", auth=auth, timeout=10),
        "overwrite the tag": requests.put(
            f"{API}/v2/{REPOSITORY}/manifests/{TAG}",
            data=b"{}",
            headers={"Content-Type": MANIFEST},
            auth=auth,
            timeout=10,
        ),
        "delete the manifest": requests.delete(f"{API}/v2/{REPOSITORY}/manifests/{digest}", auth=auth, timeout=10),
    }
    answered = {what: response.status_code for what, response in attempts.items()}
    assert answered == {what: 401 for what in attempts}, answered
    assert 'Basic realm="director-registry"' in attempts["catalog"].headers.get("Www-Authenticate", "")
    assert "repositories" not in attempts["catalog"].text
    assert real_digest() == digest  # still there, unchanged


def test_with_the_orchestrators_credential_the_registry_answers() -> None:
    """The other side: the credential the orchestrator reads (root's Docker client configuration
    on the local stack) is accepted, so the refusals above are the credential's doing."""
    response = requests.get(f"{API}/v2/_catalog", params={"n": "1"}, auth=registry_auth(), timeout=10)
    assert response.status_code == 200, response.status_code
    assert "repositories" in response.json()
