"""The site tasks' health probe (sites/scripts.py) run in the site image, as Docker runs it: it
waits out the stability window itself, fails on a miss inside it, and once steady rests before it
asks (so an idle site costs Docker one exec per rest, not one per interval)."""

from __future__ import annotations

import docker

from orchestrator.sites.scripts import HEALTH_PROBE

SCENARIO = r"""
mkdir -p /w && echo hi > /w/index.html
clock() { cut -d" " -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.2f", b - a }'; }
a=$(clock); probe; echo "nothing listens: $? $(took $a)"
httpd -p 80 -h /w
a=$(clock); probe; echo "answers: $? $(took $a)"
a=$(clock); probe; echo "steady: $? $(took $a)"
killall httpd; a=$(clock); probe; echo "steady, then gone: $? $(took $a)"
httpd -p 80 -h /w; (sleep 1; killall httpd) &
a=$(clock); rm -f /tmp/.orchestrator-*; probe; echo "dies in the window: $? $(took $a)"
"""


def run(api: docker.APIClient) -> dict[str, tuple[int, float]]:
    env = {"PORT": "80", "STABLE_SECONDS": "1.5", "HEALTH_TIMEOUT_SECONDS": "1", "HEALTH_IDLE_SECONDS": "2"}
    script = f"probe() {{ sh -c '{HEALTH_PROBE.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'; }}\n"
    container = api.create_container("director/base:latest", command=["sh", "-c", script + SCENARIO], environment=env)
    try:
        api.start(container)
        assert api.wait(container, timeout=60)["StatusCode"] == 0
        lines = api.logs(container).decode().strip().splitlines()
    finally:
        api.remove_container(container, force=True)
    outcome = {}
    for line in lines:
        label, _, values = line.partition(": ")
        code, seconds = values.split()
        outcome[label] = (int(code), float(seconds))
    return outcome


def test_the_probe_waits_out_the_window_then_rests_and_fails_on_a_miss(api: docker.APIClient) -> None:
    outcome = run(api)
    assert outcome["nothing listens"][0] == 1 and outcome["nothing listens"][1] < 3  # bounded by its timeout
    code, seconds = outcome["answers"]
    assert code == 0 and 1.5 <= seconds < 3  # one probe watched the whole window
    code, seconds = outcome["steady"]
    assert code == 0 and 2 <= seconds < 3.5  # rested first: one exec per rest
    assert outcome["steady, then gone"][0] == 1
    code, seconds = outcome["dies in the window"]
    assert code == 1 and seconds < 1.5  # a miss inside the window fails at once
