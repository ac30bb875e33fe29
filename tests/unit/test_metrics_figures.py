"""The orchestrator's own figures: a window's event, the textfile node-exporter reads, bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.metrics.figures import MAX_KINDS, Figures, write_textfile

START, END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 1, tzinfo=UTC)


def test_a_window_and_the_next() -> None:
    moved = [4096, 10]
    figures = Figures("host:1", file_totals=lambda: (moved[0], moved[1]))
    figures.observe("director.sites", "site.created", "site.deployed", 4.0)
    figures.observe("director.sites", "site.updated", "site.deployed", 8.0)
    figures.observe("director.sites", "site.created", "retry_later", 0.1)
    figures.observe("director.sites", "site.created", "dead_lettered", 0.1)
    figures.observe("director.files", "files.read", "files.read", 0.01)
    figures.queues = {"orchestrator.site-events": 3}
    event = figures.close(START, END, active=True)
    assert (event.retries, event.dead_letters, event.file_bytes_read, event.file_bytes_written) == (1, 1, 4096, 10)
    assert event.deploy_seconds is not None
    assert (event.deploy_seconds.count, event.deploy_seconds.max) == (2, 8.0)
    assert {(h.type, h.outcome): h.count for h in event.handled}[("site.created", "site.deployed")] == 1
    assert event.queues == {"orchestrator.site-events": 3} and event.active and event.window.seconds == 60
    moved[0] += 100
    later = figures.close(END, END.replace(minute=2), active=False)
    assert (later.handled, later.retries, later.deploy_seconds, later.file_bytes_read) == ([], 0, None, 100)


def test_the_textfile_counts_since_start(tmp_path: Path) -> None:
    figures = Figures("host:1")
    figures.observe("director.sites", "site.created", "site.deployed", 4.0)
    figures.close(START, END, active=True)
    figures.observe("director.sites", "site.created", "site.deployed", 400.0)
    figures.observe("director.sites", 'evil"\nkey', "failed", 0.1)
    text = figures.textfile(active=True)
    assert 'orchestrator_deploy_seconds_bucket{replica="host:1",le="5"} 1' in text
    assert 'orchestrator_deploy_seconds_bucket{replica="host:1",le="+Inf"} 2' in text
    assert 'type="evil\\"\\nkey"' in text  # a routing key cannot break the format
    assert 'orchestrator_active{replica="host:1"} 1' in text
    path = tmp_path / "orchestrator.prom"
    write_textfile(path, text)
    assert path.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["orchestrator.prom"]


def test_kinds_from_routing_keys_are_bounded() -> None:
    figures = Figures("host:1")
    for n in range(MAX_KINDS + 50):
        figures.observe("director.files", f"junk.{n}", "dead_lettered", 0.0)
    event = figures.close(START, END, active=True)
    assert len(event.handled) == MAX_KINDS + 1  # the rest counted as "other"
    assert sum(h.count for h in event.handled) == MAX_KINDS + 50
