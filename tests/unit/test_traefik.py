from __future__ import annotations

import os
import re
from pathlib import PurePath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.sites.admission import admit
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.traefik import labels as traefik
from orchestrator_contract.hostnames import Hostname, parse_hostname
from orchestrator_contract.sites import Site

_TERM = r"(Host\(`[a-z0-9.-]+`\)|HostRegexp\(`\^\[a-z0-9-\]\+\\\.[a-z0-9\\.-]+\$`\))"
RULE = re.compile(rf"{_TERM}( \|\| {_TERM})*")

# Text that is mostly host-name material plus the characters a rule injection needs.
_HOSTISH = st.text(alphabet="abcXYZ019.-*`()|&! _\n\t/\\\"'$\u0430\uff0e", max_size=40)
# Dotted names from label material, so that many generated lists parse and reach router_rule.
_GOOD_LABEL = st.text(alphabet="abzAZ09", min_size=1, max_size=8)
_LABELISH = st.one_of(_GOOD_LABEL, _GOOD_LABEL, st.text(alphabet="az9-*`_ ", max_size=4))
_NAMEISH = st.lists(_LABELISH, min_size=2, max_size=4).map(".".join)
# Arbitrary text lists, plus lists of near-valid names so that many examples reach router_rule.
# Generated rules per property: enough for every make test, more on demand (a search for a new
# hole): HYPOTHESIS_EXAMPLES=20000 make unit.
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "300"))

TEXT_LISTS = st.one_of(
    st.lists(st.text()),
    st.lists(st.one_of(st.text(), _HOSTISH, _NAMEISH), max_size=6),
    st.lists(_NAMEISH, max_size=4),
    st.lists(st.lists(_GOOD_LABEL, min_size=2, max_size=4).map(".".join), min_size=1, max_size=4),
)

# Policy allowing every syntactically valid domain (explicit, so the environment cannot narrow it).
PERMISSIVE = Settings(allow_wildcard_domains=True, allow_ip_domains=True, allowed_domain_suffixes=[])
_SITE = {
    "id": 1,
    "name": "hello",
    "kind": "static",
    "domains": [],
    "image": {"name": "director/base:latest"},
}


def _labels(hosts: list[Hostname]) -> dict[str, str]:
    return traefik.labels(
        router="site_0001",
        hosts=hosts,
        network="director-sites",
        port=80,
        entrypoint="web",
        priority=1,
        tls_entrypoint="websecure",
    )


def test_label_set_for_a_site() -> None:
    hosts = [parse_hostname("a.example.com"), parse_hostname("b.example.com")]
    assert _labels(hosts) == {
        "traefik.enable": "true",
        "traefik.http.routers.site_0001.rule": "Host(`a.example.com`) || Host(`b.example.com`)",
        "traefik.http.routers.site_0001.entrypoints": "web",
        "traefik.http.routers.site_0001.priority": "1",
        "traefik.http.routers.site_0001.service": "site_0001",
        "traefik.http.routers.site_0001.middlewares": "site_0001-mark,site_0001-retry",
        "traefik.http.routers.site_0001-tls.rule": "Host(`a.example.com`) || Host(`b.example.com`)",
        "traefik.http.routers.site_0001-tls.entrypoints": "websecure",
        "traefik.http.routers.site_0001-tls.priority": "1",
        "traefik.http.routers.site_0001-tls.service": "site_0001",
        "traefik.http.routers.site_0001-tls.tls": "true",
        "traefik.http.routers.site_0001-tls.middlewares": "site_0001-mark,site_0001-retry",
        "traefik.http.middlewares.site_0001-mark.headers.customresponseheaders.X-Served-By": "site_0001",
        "traefik.http.middlewares.site_0001-retry.retry.attempts": "3",
        "traefik.http.middlewares.site_0001-retry.retry.initialinterval": "50ms",
        "traefik.http.services.site_0001.loadbalancer.server.port": "80",
        "traefik.swarm.network": "director-sites",
    }


def test_hsts_is_a_setting_on_the_https_router_only() -> None:
    hosts = [parse_hostname("a.example.com")]
    without = _labels(hosts)
    assert not any("stsseconds" in key for key in without)
    with_hsts = traefik.labels(
        router="site_0001",
        hosts=hosts,
        network="n",
        port=80,
        entrypoint="web",
        priority=1,
        tls_entrypoint="websecure",
        hsts_seconds=31536000,
    )
    assert with_hsts["traefik.http.middlewares.site_0001-hsts.headers.stsseconds"] == "31536000"
    assert with_hsts["traefik.http.routers.site_0001-tls.middlewares"].endswith(",site_0001-hsts")
    assert with_hsts["traefik.http.routers.site_0001.middlewares"] == "site_0001-mark,site_0001-retry"


def test_router_rule_for_one_host() -> None:
    assert traefik.router_rule([parse_hostname("A.Example.com")]) == "Host(`a.example.com`)"


def test_router_rule_refuses_plain_strings() -> None:
    with pytest.raises(TypeError):
        traefik.router_rule(["a.example.com"])  # type: ignore[list-item]


def test_router_rule_refuses_a_plain_string_as_the_sequence() -> None:
    with pytest.raises(TypeError):
        traefik.router_rule("a.example.com")  # type: ignore[arg-type]


def test_router_rule_refuses_a_hostname_built_without_parsing() -> None:
    with pytest.raises(TypeError):
        traefik.router_rule([Hostname("A.EXAMPLE.COM")])
    # A forged Hostname holding rule syntax is refused too (parse_hostname raises ValueError).
    with pytest.raises((TypeError, ValueError)):
        traefik.router_rule([Hostname("a.com`) || PathPrefix(`/")])


def test_router_rule_refuses_an_empty_list() -> None:
    with pytest.raises(ValueError):
        traefik.router_rule([])


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT_LISTS)
def test_router_rules_hold_only_host_terms(values: list[str]) -> None:
    hosts = []
    for value in values:
        try:
            hosts.append(parse_hostname(value))
        except ValueError:
            return
    if not hosts:
        with pytest.raises(ValueError):
            traefik.router_rule(hosts)
        return
    rule = traefik.router_rule(hosts)
    assert RULE.fullmatch(rule), rule
    assert rule.count("Host(") + rule.count("HostRegexp(") == len(hosts)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT_LISTS)
def test_sites_with_arbitrary_domains_yield_only_host_rules(domains: list[str]) -> None:
    try:
        site = Site.model_validate({**_SITE, "domains": domains})
    except ValidationError:
        return
    rule = _labels(list(site.hostnames))["traefik.http.routers.site_0001.rule"]
    assert RULE.fullmatch(rule), rule
    # The production path too: policy permitting everything, the service's rule is still only Host terms.
    admitted = admit(site, Admission.of(PERMISSIVE))
    spec = desired_service(admitted, 1, SiteRuntime.of(PERMISSIVE), PurePath("/srv/director/sites/site_0001"))
    assert spec.labels["traefik.http.routers.site_0001.rule"] == rule


def test_a_wildcard_becomes_a_one_label_host_regexp() -> None:
    rule = traefik.router_rule([parse_hostname("*.example.com"), parse_hostname("example.com")])
    assert rule == r"HostRegexp(`^[a-z0-9-]+\.example\.com$`) || Host(`example.com`)"
    assert RULE.fullmatch(rule)
