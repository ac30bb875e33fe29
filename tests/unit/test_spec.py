from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import pytest
from fakes import BASE, NGINX, PINNED

from orchestrator.config import Settings
from orchestrator.errors import DomainNotAllowed, ImageNotAllowed
from orchestrator.labels import DEPLOYMENT, DOMAINS, FINGERPRINT, MANAGED_BY, SITE_ID, STABLE_GATE, VERSION
from orchestrator.sites import service as spec_module
from orchestrator.sites.admission import admit
from orchestrator.sites.service import Mount, ServiceSpec
from orchestrator.sites.spec import desired_service, without_gate
from orchestrator.slices import Admission, SiteRuntime, unpinned_default_images
from orchestrator.swarm.mapping import to_docker
from orchestrator_contract.images import is_pinned
from orchestrator_contract.sites import Site, service_name

SiteData = Callable[..., dict[str, Any]]
SITE_DIR = PurePath("/srv/director/sites/site_0001")
RULE = "traefik.http.routers.site_0001.rule"


def build(data: dict[str, Any], settings: Settings | None = None, version: int = 1) -> ServiceSpec:
    settings = settings or Settings(**PINNED)
    admitted = admit(Site.model_validate(data), Admission.of(settings))
    return desired_service(admitted, version, SiteRuntime.of(settings), SITE_DIR)


def _mount(spec: ServiceSpec, target: str) -> Mount:
    (mount,) = [m for m in spec.mounts if m.target == target]
    return mount


@pytest.mark.parametrize(("site_id", "name"), [(1, "site_0001"), (42, "site_0042"), (12345, "site_12345")])
def test_service_name_is_zero_padded_site_id(site_id: int, name: str) -> None:
    assert service_name(site_id) == name


def test_service_is_named_after_the_site_id(site_data: SiteData) -> None:
    assert build(site_data(id=1)).name == "site_0001"
    assert build(site_data(id=12345)).name == "site_12345"


# --- images -------------------------------------------------------------------------------------


def test_dynamic_site_runs_the_default_image_as_pinned(site_data: SiteData) -> None:
    assert build(site_data(image=None)).image == BASE  # never a tag, never Docker Hub's


@pytest.mark.parametrize(
    "name", ["director/base", "director/base:latest", "198.18.213.1:5000/director/base:latest", BASE]
)
def test_a_default_image_named_by_director_runs_as_pinned(site_data: SiteData, name: str) -> None:
    assert build(site_data(image={"name": name})).image == BASE


@pytest.mark.parametrize(
    "name",
    [
        "other.example/director/base:latest",  # the name, in another registry
        "198.18.213.1:5000/director/base:latest@sha256:" + "9" * 64,  # other bytes
        "198.18.213.1:5000/director/base@sha256:" + "1" * 64,  # the bytes, without the name
    ],
)
def test_a_default_image_named_elsewhere_or_with_other_bytes_is_refused(site_data: SiteData, name: str) -> None:
    with pytest.raises(ImageNotAllowed):
        build(site_data(image={"name": name}))


def test_a_bare_custom_image_is_read_inside_the_sites_namespace(site_data: SiteData, settings: Settings) -> None:
    spec = build(site_data(image={"name": "mysite:1.2", "custom": True}), settings)
    assert spec.image == settings.registry + "/site_0001/mysite:1.2"
    # The site's own repository (what the image builder pushes) is read as it is.
    assert build(site_data(image={"name": "site_0001:7", "custom": True}), settings).image == (
        settings.registry + "/site_0001:7"
    )


@pytest.mark.parametrize("name", ["/site_0001:7", "/site_0001/app:1.2", "/site_0001/a/b@sha256:" + "a" * 64])
def test_a_custom_image_in_the_sites_namespace_is_kept(site_data: SiteData, settings: Settings, name: str) -> None:
    full = settings.registry + name
    assert build(site_data(image={"name": full, "custom": True}), settings).image == full


@pytest.mark.parametrize("name", ["/site_0042:1", "/site_0042/app:1", "/site_00011:1", "/shared:1", "/site_0001x/a:1"])
def test_another_tenants_image_is_refused(site_data: SiteData, settings: Settings, name: str) -> None:
    with pytest.raises(ImageNotAllowed, match="namespace"):
        build(site_data(image={"name": settings.registry + name, "custom": True}), settings)


def test_an_image_pinned_by_digest_is_directors_choice(site_data: SiteData, settings: Settings) -> None:
    pinned = settings.registry + "/shared/php@sha256:" + "b" * 64
    assert build(site_data(image={"name": pinned, "custom": True}), settings).image == pinned


def test_default_image_not_on_the_allow_list_is_refused(site_data: SiteData) -> None:
    with pytest.raises(ImageNotAllowed):
        build(site_data(image={"name": "evil:latest"}))
    with pytest.raises(ImageNotAllowed):
        build(site_data(image={"name": "director/base:other"}))


@pytest.mark.parametrize(
    "name",
    ["evil.io/x:1", "localhost/x", "evil:5000/x", "registry.director.local/other/x", "evil.io/site_0001:1"],
)
def test_custom_image_naming_another_registry_is_refused(site_data: SiteData, name: str) -> None:
    with pytest.raises(ImageNotAllowed):
        build(site_data(image={"name": name, "custom": True}))


@pytest.mark.parametrize("name", ["Evil/x", "a" * 250, "x/" + "b" * 240])
def test_custom_image_that_is_no_valid_name_under_the_registry_is_refused(site_data: SiteData, name: str) -> None:
    # Well-formed on its own, but not once prefixed: an error type, never a bare ValueError.
    with pytest.raises(ImageNotAllowed) as caught:
        build(site_data(image={"name": name, "custom": True}))
    assert caught.value.code == "image_not_allowed"
    assert len(caught.value.message) < 200


def test_allow_list_is_a_setting(site_data: SiteData) -> None:
    php = "reg.example/director/php:8@sha256:" + "3" * 64
    settings = Settings(**{**PINNED, "allowed_default_images": [BASE, php]})
    assert build(site_data(image={"name": "director/php:8"}), settings).image == php


# --- static sites -------------------------------------------------------------------------------


def test_static_site_runs_nginx_serving_the_public_dir(site_data: SiteData) -> None:
    spec = build(site_data(kind="static", env={"SECRET": "x"}))
    assert spec.image == NGINX
    assert spec.command is not None and "supervise nginx -e stderr -c /tmp/nginx.conf" in spec.command[-1]
    assert "SECRET" not in spec.env  # the site's env is for dynamic sites only
    assert spec.env["PORT"] == "80"  # for the health probe
    assert "root /site/public;" in spec.env["NGINX_CONF"]
    assert "listen 80 default_server;" in spec.env["NGINX_CONF"]


def test_static_site_mounts_its_directory_read_only_never_public_itself(site_data: SiteData) -> None:
    """Docker resolves a bind source on the host at every task start: a link planted as public/
    must be resolved inside the container instead, so the mount is the site directory."""
    spec = build(site_data(kind="static"))
    mount = _mount(spec, "/site")
    assert mount == Mount(source="/srv/director/sites/site_0001", target="/site", read_only=True)
    assert all(not m.source.endswith("/public") for m in spec.mounts)


def test_static_site_ignores_the_site_image(site_data: SiteData) -> None:
    # The site image is not used for a static site, so an image policy cannot refuse it.
    assert build(site_data(kind="static", image={"name": "evil:latest"})).image == NGINX


# --- dynamic sites ------------------------------------------------------------------------------


def test_dynamic_site_mounts_site_dir_read_write_at_site(site_data: SiteData) -> None:
    spec = build(site_data())
    assert _mount(spec, "/site") == Mount(source=str(SITE_DIR), target="/site", type="bind", read_only=False)
    # No working directory for the runtime to resolve (and create, as root) inside the site's own
    # tree: the entry program changes into /site/public itself.
    assert spec.workdir is None and "cd /site/public" in (spec.command or ("",))[-1]


def test_dynamic_site_command_searches_run_sh_in_order(site_data: SiteData) -> None:
    command = build(site_data()).command
    assert command is not None
    assert command[:2] == ("/bin/sh", "-c")
    script = command[2]
    assert "for f in /site/run.sh /site/private/run.sh /site/public/run.sh; do" in script
    assert "cd /site/public" in script


def test_dynamic_site_command_says_so_when_there_is_no_run_sh(site_data: SiteData) -> None:
    script = build(site_data()).command[2]  # type: ignore[index]
    assert "no run.sh in /site, /site/private or /site/public" in script
    # It keeps the task alive (and healthy) instead of crash-looping, so an empty new site still
    # deploys, and starts the site once run.sh appears.
    assert "idle until one is added" in script and "while" in script


def test_dynamic_site_environment(site_data: SiteData) -> None:
    spec = build(site_data(env={"GREETING": "hello", "DB_URL": "postgres://x"}))
    assert spec.env["PORT"] == "80"
    assert spec.env["HOST"] == "0.0.0.0"
    assert spec.env["GREETING"] == "hello"
    assert spec.env["DB_URL"] == "postgres://x"
    assert spec.env["SITE_ID"] == "1"
    assert spec.env["SITE_DIR"] == "/site"
    assert spec.env["HOME"] == "/site"


def test_port_follows_the_setting(site_data: SiteData) -> None:
    spec = build(site_data(), Settings(site_port=8080))
    assert spec.env["PORT"] == "8080"
    assert spec.labels["traefik.http.services.site_0001.loadbalancer.server.port"] == "8080"


# --- replicas and resources ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_serving_site_has_one_replica(site_data: SiteData, kind: str) -> None:
    assert build(site_data(kind=kind, serving=True)).replicas == 1


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_site_not_serving_has_no_replicas_and_no_router(site_data: SiteData, kind: str) -> None:
    spec = build(site_data(kind=kind, serving=False))
    assert spec.replicas == 0
    assert not [key for key in spec.labels if key.startswith("traefik.")]
    assert spec.labels[DOMAINS]  # its domains stay claimed


def test_resources_in_nano_cpus_and_bytes(site_data: SiteData) -> None:
    spec = build(site_data(resources={"cpus": 0.5, "memory": "256Mi"}))
    assert spec.nano_cpus == 500_000_000
    assert spec.memory_bytes == 256 * 2**20


def test_resources_default_to_one_cpu_and_256_mebibytes(site_data: SiteData) -> None:
    data = site_data()
    del data["resources"]
    spec = build(data)
    assert spec.nano_cpus == 1_000_000_000
    assert spec.memory_bytes == 256 * 2**20


def test_resources_are_clamped_to_the_settings_maxima(site_data: SiteData) -> None:
    settings = Settings(max_cpus=1.5, max_memory="512Mi")
    spec = build(site_data(resources={"cpus": 64, "memory": "64Gi"}), settings)
    assert spec.nano_cpus == 1_500_000_000
    assert spec.memory_bytes == 512 * 2**20


def test_default_maxima_clamp_too(site_data: SiteData, settings: Settings) -> None:
    spec = build(site_data(resources={"cpus": 64, "memory": "3Gi"}), settings)
    assert spec.nano_cpus == round(settings.max_cpus * 1e9)
    assert spec.memory_bytes == 2 * 2**30


# --- swarm timings ------------------------------------------------------------------------------


def test_delays_are_in_nanoseconds(site_data: SiteData) -> None:
    settings = Settings(
        update_delay_seconds=1.5, update_monitor_seconds=2, restart_delay_seconds=3, stop_grace_seconds=10
    )
    spec = build(site_data(), settings)
    assert spec.update_delay_ns == 1_500_000_000
    assert spec.update_monitor_ns == 2_000_000_000
    assert spec.restart_delay_ns == 3_000_000_000
    # The drain comes on top of the grace period.
    assert spec.stop_grace_ns == 10_000_000_000 + round(settings.drain_seconds * 1e9)


def test_default_delays_are_whole_seconds_not_nanoseconds(site_data: SiteData, settings: Settings) -> None:
    spec = build(site_data(), settings)
    assert spec.update_delay_ns == settings.update_delay_seconds * 1e9
    assert spec.restart_delay_ns == settings.restart_delay_seconds * 1e9
    assert spec.update_monitor_ns == settings.update_monitor_seconds * 1e9
    assert spec.stop_grace_ns == (settings.stop_grace_seconds + settings.drain_seconds) * 1e9
    # Swarm reads these as nanoseconds: a value like 1 or 2 would mean "no delay at all".
    assert spec.update_delay_ns >= 1_000_000
    assert spec.restart_delay_ns >= 1_000_000


def test_a_crash_loop_is_bounded(site_data: SiteData) -> None:
    spec = build(site_data(), Settings(restart_max_attempts=7, restart_window_seconds=120))
    assert (spec.restart_max_attempts, spec.restart_window_ns) == (7, 120_000_000_000)
    policy = to_docker(spec)["task_template"]["RestartPolicy"]
    assert (policy["Condition"], policy["MaxAttempts"], policy["Window"]) == ("any", 7, 120_000_000_000)


# --- hardening ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_services_are_hardened(site_data: SiteData, settings: Settings, kind: str) -> None:
    spec = build(site_data(kind=kind), settings)
    assert spec.read_only is True
    assert spec.cap_drop == ("ALL",)
    assert spec.cap_add == tuple(settings.cap_add)
    assert spec.init is True
    tmpfs = {m.target for m in spec.mounts if m.type == "tmpfs"}
    assert {"/tmp", "/run"} <= tmpfs
    assert not hasattr(spec, "privileged")
    assert "SYS_ADMIN" not in spec.cap_add


def test_cap_add_follows_the_setting(site_data: SiteData) -> None:
    assert build(site_data(), Settings(cap_add=["CHOWN"])).cap_add == ("CHOWN",)


def test_log_options_are_bounded(site_data: SiteData, settings: Settings) -> None:
    assert build(site_data(), settings).log_options == {"max-size": "10m", "max-file": "3"}


def test_service_is_on_the_sites_network(site_data: SiteData, settings: Settings) -> None:
    spec = build(site_data(), settings)
    assert spec.network == "director-sites"
    assert spec.labels["traefik.swarm.network"] == "director-sites"


# --- labels -------------------------------------------------------------------------------------


def test_ownership_labels(site_data: SiteData) -> None:
    spec = build(site_data(id=7), version=3)
    assert spec.labels[MANAGED_BY] == "orchestrator"
    assert spec.labels["com.director.managed-by"] == "orchestrator"
    assert spec.labels[SITE_ID] == "7"
    assert spec.labels[VERSION] == "3"
    assert spec.labels[DOMAINS] == "a.example.com,b.example.com"


def test_deployment_label_names_the_deployment(site_data: SiteData) -> None:
    """A deployment's Traefik routes only its own sites (a swarm-provider constraint on it)."""
    assert build(site_data()).labels[DEPLOYMENT] == "director"
    assert build(site_data(), Settings(deployment="director-prod")).labels[DEPLOYMENT] == "director-prod"
    assert build(site_data(), Settings(deployment="other")).fingerprint() != build(site_data()).fingerprint()


def test_traefik_labels(site_data: SiteData) -> None:
    spec = build(site_data())
    assert spec.labels["traefik.enable"] == "true"
    assert spec.labels[RULE] == "Host(`a.example.com`) || Host(`b.example.com`)"
    assert spec.labels["traefik.http.routers.site_0001.entrypoints"] == "web"
    assert spec.labels["traefik.http.routers.site_0001.service"] == "site_0001"


def test_duplicate_domains_appear_once(site_data: SiteData) -> None:
    spec = build(site_data(domains=["a.example.com", "A.Example.com", "b.example.com", "a.example.com"]))
    assert spec.labels[DOMAINS] == "a.example.com,b.example.com"
    assert spec.labels[RULE] == "Host(`a.example.com`) || Host(`b.example.com`)"


# --- fingerprint --------------------------------------------------------------------------------


def test_fingerprint_label_is_the_spec_fingerprint(site_data: SiteData) -> None:
    spec = build(site_data())
    assert spec.labels[FINGERPRINT] == spec.fingerprint()
    assert len(spec.labels[FINGERPRINT]) == 32


def test_fingerprint_is_stable_for_the_same_input(site_data: SiteData) -> None:
    assert build(site_data()).labels[FINGERPRINT] == build(site_data()).labels[FINGERPRINT]


def test_fingerprint_ignores_the_version(site_data: SiteData) -> None:
    one, two = build(site_data(), version=1), build(site_data(), version=2)
    assert one.labels[VERSION] != two.labels[VERSION]
    assert one.labels[FINGERPRINT] == two.labels[FINGERPRINT]


def test_whether_a_rollout_holds_tasks_back_is_no_part_of_the_desired_state(site_data: SiteData) -> None:
    spec = build(site_data())
    watching = without_gate(spec)
    assert (spec.labels[STABLE_GATE], watching.labels[STABLE_GATE]) == ("1", "0")
    assert watching.fingerprint() == spec.fingerprint()
    # Each task reads its service's label through the same env entry.
    assert spec.env["STABLE_GATE"] == watching.env["STABLE_GATE"] == '{{index .Service.Labels "' + STABLE_GATE + '"}}'


@pytest.mark.parametrize(
    "change",
    [
        {"domains": ["a.example.com"]},
        {"domains": ["b.example.com", "a.example.com"]},
        {"resources": {"cpus": 1.0, "memory": "256Mi"}},
        {"resources": {"cpus": 0.5, "memory": "512Mi"}},
        {"serving": False},
        {"env": {"GREETING": "bye"}},
        {"kind": "static"},
        {"image": {"name": "mysite:1", "custom": True}},
    ],
    ids=["fewer-domains", "domain-order", "cpus", "memory", "serving", "env", "kind", "image"],
)
def test_fingerprint_changes_with_the_spec(site_data: SiteData, change: dict[str, Any]) -> None:
    assert build(site_data()).labels[FINGERPRINT] != build(site_data(**change)).labels[FINGERPRINT]


def test_fingerprint_changes_with_settings(site_data: SiteData) -> None:
    base = build(site_data(), Settings()).labels[FINGERPRINT]
    assert build(site_data(), Settings(network="other")).labels[FINGERPRINT] != base
    assert build(site_data(), Settings(cap_add=["CHOWN"])).labels[FINGERPRINT] != base


def test_with_fingerprint_is_idempotent(site_data: SiteData) -> None:
    spec = build(site_data())
    assert spec_module.with_fingerprint(spec) == spec


# --- domain policy ------------------------------------------------------------------------------


def test_wildcard_domain_is_refused_by_default(site_data: SiteData) -> None:
    with pytest.raises(DomainNotAllowed):
        build(site_data(domains=["a.example.com", "*.example.com"]))


def test_wildcard_domain_is_allowed_by_the_setting(site_data: SiteData) -> None:
    spec = build(site_data(domains=["*.example.com"]), Settings(allow_wildcard_domains=True))
    assert spec.labels[RULE] == r"HostRegexp(`^[a-z0-9-]+\.example\.com$`)"


def test_ip_domain_is_refused_by_default(site_data: SiteData) -> None:
    with pytest.raises(DomainNotAllowed):
        build(site_data(domains=["10.0.0.1"]))


def test_ip_domain_is_allowed_by_the_setting(site_data: SiteData) -> None:
    spec = build(site_data(domains=["10.0.0.1"]), Settings(allow_ip_domains=True))
    assert spec.labels[RULE] == "Host(`10.0.0.1`)"


def test_domains_outside_the_allowed_suffixes_are_refused(site_data: SiteData) -> None:
    settings = Settings(allowed_domain_suffixes=["sites.example.org"])
    for domain in ["example.com", "evilsites.example.org", "sites.example.org.evil.com"]:
        with pytest.raises(DomainNotAllowed):
            build(site_data(domains=[domain]), settings)
    # One refused domain refuses the whole site.
    with pytest.raises(DomainNotAllowed):
        build(site_data(domains=["a.sites.example.org", "example.com"]), settings)


def test_domains_within_the_allowed_suffixes_are_accepted(site_data: SiteData) -> None:
    settings = Settings(allowed_domain_suffixes=[".Sites.Example.org."])
    spec = build(site_data(domains=["sites.example.org", "a.sites.example.org", "b.c.sites.example.org"]), settings)
    assert spec.labels[DOMAINS] == "sites.example.org,a.sites.example.org,b.c.sites.example.org"


def test_wildcard_needs_both_the_setting_and_an_allowed_suffix(site_data: SiteData) -> None:
    settings = Settings(allow_wildcard_domains=True, allowed_domain_suffixes=["example.org"])
    assert (
        build(site_data(domains=["*.example.org"]), settings).labels[RULE]
        == r"HostRegexp(`^[a-z0-9-]+\.example\.org$`)"
    )
    with pytest.raises(DomainNotAllowed):
        build(site_data(domains=["*.example.com"]), settings)


def test_placement_constraints_pin_site_tasks_to_the_sites_nodes(site_data: SiteData) -> None:
    assert build(site_data()).constraints == ("node.labels.director.sites==true",)
    settings = Settings(site_node_label="", placement_constraints="node.labels.zone==a")  # type: ignore[arg-type]
    assert build(site_data(), settings).constraints == ("node.labels.zone==a",)
    # The label's constraint given again among the operator's is kept once.
    settings = Settings(placement_constraints="node.labels.director.sites==true,node.labels.zone==a")  # type: ignore[arg-type]
    assert build(site_data(), settings).constraints == ("node.labels.director.sites==true", "node.labels.zone==a")


def test_a_site_node_label_cannot_inject_a_constraint() -> None:
    with pytest.raises(ValueError):
        Settings(site_node_label="x==true,node.role==manager")


def test_a_default_image_is_pinned_only_in_full() -> None:
    """Round four: `director/base:latest` unqualified made a node without it pull from Docker Hub,
    where someone else owns that name; qualified but by tag, the holder of a registry credential
    (or a mistake) moved what every new or rescheduled task runs. `orchestrator run` refuses both."""
    assert is_pinned(BASE) and is_pinned("localhost/x:1@sha256:" + "0" * 64)
    for loose in (
        "director/base:latest",  # Docker Hub's name
        "director/base:latest@sha256:" + "0" * 64,  # no registry of its own: Docker Hub's too
        "198.18.213.1:5000/director/base:latest",  # a tag the registry may move
        "198.18.213.1:5000/director/base@sha256:" + "0" * 64,  # no name Director could ask for
        "198.18.213.1:5000/director/base:latest@sha256:" + "0" * 63,
    ):
        assert not is_pinned(loose), loose
    assert unpinned_default_images(Settings(**PINNED)) == []
    loose_settings = Settings(**{**PINNED, "static_image": "nginx:latest", "allowed_default_images": [BASE, "x:1"]})
    assert unpinned_default_images(loose_settings) == ["STATIC_IMAGE='nginx:latest'", "ALLOWED_DEFAULT_IMAGES='x:1'"]
