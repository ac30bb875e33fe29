"""A site's own code attacks the orchestrator (round three): its answer to the deploy check through
Traefik is endless or trickled (the check reads headers and a few bytes, under one deadline, and
other sites' events keep flowing meanwhile); it crash-loops (Swarm gives up after a bounded number
of restarts instead of starting a container every few seconds forever)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import docker
from support import (
    Director,
    OrchestratorProcess,
    Results,
    deploy,
    eventually,
    fetch,
    fresh_site_id,
    site_event,
    write_site,
)

from orchestrator_contract.sites import service_name

# A tiny server in the site's image: the health probe (Host 127.0.0.1) gets a short page, anything
# through Traefik (the site's own Host) gets `BODY` after the headers.
HANDLER = r"""#!/bin/sh
host=""
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Hh]ost:*) host=${line#*: } ;; esac
done
case "$host" in
  127.0.0.1*) printf 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok' ;;
  *) printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n'; BODY ;;
esac
"""
BODIES = {
    "endless": "exec cat /dev/zero",
    "trickled": "while :; do printf B; sleep 1; done",
}


def rss_kb(process: OrchestratorProcess) -> int:
    assert process.proc is not None
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hostile_site(sites_root: Path, site_id: int, body: str) -> None:
    site_dir = write_site(sites_root, site_id, page="never read", run_sh=False)
    (site_dir / "private" / "handler.sh").write_text(HANDLER.replace("BODY", body))
    (site_dir / "run.sh").write_text('#!/bin/sh\nexec nc -ll -p "$PORT" -e sh /site/private/handler.sh\n')


async def test_an_endless_or_trickled_answer_neither_fills_memory_nor_holds_the_check(
    director: Director, results: Results, sites_root: Path, orchestrator: OrchestratorProcess
) -> None:
    sites = {label: fresh_site_id() for label in BODIES}
    for label, site_id in sites.items():
        hostile_site(sites_root, site_id, BODIES[label])
    bystander = fresh_site_id()
    write_site(sites_root, bystander, page="a quiet neighbour")
    before = rss_kb(orchestrator)
    started = time.monotonic()

    outcome = await asyncio.gather(
        *(deploy(director, results, site_event("site.created", s, 1, domains=[f"{label}{s}.example.com"]))
          for label, s in sites.items()),
        deploy(director, results, site_event("site.created", bystander, 1)),
    )  # fmt: skip

    assert [r.type for r in outcome] == ["site.deployed"] * 3, outcome
    assert all(r.probe is not None and r.probe.status == 200 for r in outcome[:2])
    assert time.monotonic() - started < 45  # each within the deploy deadlines, none stuck reading
    await asyncio.sleep(2)  # anything still streaming into us would show now
    assert rss_kb(orchestrator) - before < 10 * 1024


REPORTER = """#!/bin/sh
{ grep " /site " /proc/mounts; grep NoNewPrivs /proc/self/status; } > /site/public/report.txt
exec httpd -f -p "$PORT" -h /site/public
"""


async def test_a_site_runs_without_new_privileges_on_a_nosuid_nodev_directory_only_it_reads(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    site_dir = write_site(sites_root, site_id, page="report")
    (site_dir / "run.sh").write_text(REPORTER)
    host = f"report{site_id}.example.com"
    assert (await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))).type == (
        "site.deployed"
    )
    report = (await fetch(host, "/report.txt")).text
    mount_options = report.splitlines()[0].split()[3].split(",")
    assert "nosuid" in mount_options and "nodev" in mount_options, report
    assert "NoNewPrivs:\t1" in report, report  # a setuid binary in the image raises nothing
    assert site_dir.stat().st_mode & 0o777 == 0o750  # no other host user reads a site
    assert (site_dir / "private").stat().st_mode & 0o777 == 0o700  # its secrets: the site alone


async def test_a_crash_looping_site_is_restarted_a_bounded_number_of_times(
    director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    site_dir = write_site(sites_root, site_id, page="never served")
    (site_dir / "run.sh").write_text("#!/bin/sh\necho crashing >&2\nexit 1\n")
    result = await deploy(director, results, site_event("site.created", site_id, 1))
    assert result.type == "site.failed" and result.error is not None and result.error.code == "run_script_failed"
    name = service_name(site_id)
    attempts = int(api.inspect_service(name)["Spec"]["TaskTemplate"]["RestartPolicy"]["MaxAttempts"])
    assert 0 < attempts <= 10, attempts  # the test settings keep the loop short (8)

    def tasks() -> list[dict[str, str]]:
        return [t["Status"] for t in api.tasks(filters={"service": name})]

    def given_up() -> bool:
        states = [status["State"] for status in tasks()]
        return len(states) == attempts + 1 and all(state in ("failed", "rejected", "complete") for state in states)

    await eventually(given_up, timeout=60)
    await asyncio.sleep(3)  # past the restart delay: no further container is started
    assert len(tasks()) == attempts + 1


# The site deletes what the probe keeps in /tmp and kills every `sleep` it sees, in a loop.
PROBE_BREAKER = """#!/bin/sh
(while :; do rm -f /tmp/.orchestrator-*; killall sleep 2>/dev/null; usleep 50000; done) &
exec httpd -f -p "$PORT" -h /site/public
"""


async def test_a_site_cannot_make_its_health_probe_run_more_often_than_once_per_rest(
    director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    """Round four: deleting /tmp/.orchestrator-passing in a loop kept Docker at six health execs
    a second (each tens of ms of dockerd's CPU). A steady task's probe now rests its whole time
    by the kernel's clock, whatever the site does to the marks or the probe's `sleep`."""
    site_dir = write_site(sites_root, site_id, page="breaker")
    (site_dir / "run.sh").write_text(PROBE_BREAKER)
    host = f"breaker{site_id}.example.com"
    result = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    assert result.type == "site.deployed", result
    (container,) = api.containers(filters={"label": f"com.docker.swarm.service.name={service_name(site_id)}"})
    env = dict(v.split("=", 1) for v in api.inspect_container(container["Id"])["Config"]["Env"])
    await asyncio.sleep(float(env["HEALTH_YOUNG_SECONDS"]) + 1)  # past its start: steady
    started = int(time.time())
    await asyncio.sleep(8)
    watched = {"container": container["Id"], "event": "exec_start"}
    events = api.events(since=started, until=int(time.time()), filters=watched, decode=True)
    execs = sum(1 for _ in events)
    assert execs <= 1, f"{execs} health execs in 8 s (one per {env['HEALTH_IDLE_SECONDS']} s rest at most)"
    response = await fetch(host)
    assert response.status_code == 200 and "breaker" in response.text
