"""The site tasks' health probe (sites/scripts.py) run in the site image, as Docker runs it: it
waits out the stability window itself, fails on a miss inside it, and once steady rests before it
can pass (so an idle site costs Docker one exec per rest, not one per interval), whatever the site
does to the probe's marks or its `sleep`; with nothing older serving, it passes at the first
answer and a miss in the window it watches ends the server."""

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


# A task past its young age (HEALTH_YOUNG_SECONDS=0) whose site deletes the marks and kills every
# `sleep` it sees, in a loop.
STEADY = r"""
mkdir -p /w && echo hi > /w/index.html
clock() { cut -d" " -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.2f", b - a }'; }
httpd -p 80 -h /w
(while :; do rm -f /tmp/.orchestrator-*; killall sleep 2>/dev/null; usleep 50000; done) &
a=$(clock); probe; echo "steady, marks deleted, sleep killed: $? $(took $a)"
killall httpd; rm -f /tmp/.orchestrator-*; usleep 200000
a=$(clock); probe; echo "steady, without a mark, nothing answers: $? $(took $a)"
"""


# A task during whose rollout nothing older serves (STABLE_GATE=0): the probe passes at the first
# answer and watches the window in the background; a miss signals the entry program (this shell
# plays it: its pid in the mark, a trap on USR1).
WATCHED = r"""
mkdir -p /w && echo hi > /w/index.html
clock() { cut -d" " -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.2f", b - a }'; }
ended=0
trap 'ended=1' USR1
echo $$ > /tmp/.orchestrator-supervisor
httpd -p 80 -h /w
a=$(clock); probe; echo "first answer: $? $(took $a)"
sleep 2.5
[ -e /tmp/.orchestrator-stable ]; echo "answered through the window: $ended $?"
rm -f /tmp/.orchestrator-stable /tmp/.orchestrator-passing
a=$(clock); probe; echo "first answer again: $? $(took $a)"
usleep 300000; killall httpd
n=0; while [ "$ended" = 0 ] && [ "$n" -lt 100 ]; do usleep 50000; n=$((n + 1)); done
echo "a miss in the window ends the server: $ended $(took $a)"
"""


def run(
    api: docker.APIClient, scenario: str = SCENARIO, young: int = 600, gate: str = "1"
) -> dict[str, tuple[int, float]]:
    env = {"PORT": "80", "STABLE_SECONDS": "1.5", "HEALTH_TIMEOUT_SECONDS": "1", "HEALTH_IDLE_SECONDS": "2",
           "HEALTH_YOUNG_SECONDS": str(young), "STABLE_GATE": gate}  # fmt: skip
    script = f"probe() {{ sh -c '{HEALTH_PROBE.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'; }}\n"
    container = api.create_container("director/base:latest", command=["sh", "-c", script + scenario], environment=env)
    try:
        api.start(container)
        assert api.wait(container, timeout=60)["StatusCode"] == 0
        lines = api.logs(container).decode().strip().splitlines()
    finally:
        api.remove_container(container, force=True)
    outcome = {}
    for line in lines:
        label, found, values = line.partition(": ")
        if not found:
            continue  # the shell's notes of the jobs the scenario killed
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


def test_a_steady_probe_rests_whatever_the_site_does_to_its_marks_or_its_sleep(api: docker.APIClient) -> None:
    outcome = run(api, STEADY, young=0)
    code, seconds = outcome["steady, marks deleted, sleep killed"]
    assert code == 0 and 2 <= seconds < 3.5  # the whole rest, on the kernel's clock
    code, seconds = outcome["steady, without a mark, nothing answers"]
    assert code == 1 and seconds < 1.5  # a hung or gone server fails at once


def test_with_nothing_older_serving_the_probe_passes_at_once_and_a_miss_in_the_window_ends_the_server(
    api: docker.APIClient,
) -> None:
    outcome = run(api, WATCHED, gate="0")
    code, seconds = outcome["first answer"]
    assert code == 0 and seconds < 1  # healthy at the first answer: Traefik may find the task now
    assert outcome["answered through the window"] == (0, 0)  # not ended, and marked stable
    assert outcome["first answer again"][0] == 0
    ended, seconds = outcome["a miss in the window ends the server"]
    assert ended == 1 and seconds < 1.5  # within the window, at the first miss
