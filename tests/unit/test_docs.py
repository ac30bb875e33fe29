"""The generated documentation (scripts/docs/): the configuration page follows `Settings`, the
benchmark page each section's newest run, and the docs point only at what exists."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _generator(name: str) -> ModuleType:
    """One of scripts/docs/'s modules (they import each other as top-level modules)."""
    sys.path.insert(0, str(ROOT / "scripts" / "docs"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "scripts" / "docs"))


@pytest.fixture(scope="module")
def configuration() -> ModuleType:
    return _generator("configuration")


@pytest.fixture(scope="module")
def benchmarks() -> ModuleType:
    return _generator("benchmarks")


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    return _generator("checks")


def test_the_configuration_page_is_what_settings_generate(configuration: ModuleType) -> None:
    page, undocumented = configuration.configuration_page()
    assert undocumented == []
    assert (ROOT / "docs" / "configuration.md").read_text() == page, "run `make docs`"


def test_every_setting_has_its_variable_default_and_comment_on_the_page(configuration: ModuleType) -> None:
    page, _ = configuration.configuration_page()
    for name, field in Settings.model_fields.items():
        assert f"`ORCHESTRATOR_{name.upper()}`" in page
        assert configuration.default_of(field) in page
    assert "| `ORCHESTRATOR_HEALTH_INTERVAL_SECONDS`<br>`ORCHESTRATOR_HEALTH_IDLE_SECONDS` |" in page
    assert "`0.25`<br>`60`" in page


SOURCE = """
class Settings(BaseSettings):
    # --- first section ---
    # Shared by a and b.
    a: int = 1
    b: int = 2

    c: int = 3

    # --- second section ---
    # d alone.
    d: str = "x"
    # e and f,
    # over two lines.
    e: str = "y"
    f: str = "z"
"""


def test_a_comment_block_documents_the_fields_below_it_up_to_a_blank_line(configuration: ModuleType) -> None:
    groups = configuration.documented_fields(SOURCE)
    assert [(g.section, g.names, g.comment) for g in groups] == [
        ("first section", ["a", "b"], "Shared by a and b."),
        ("first section", ["c"], ""),
        ("second section", ["d"], "d alone."),
        ("second section", ["e", "f"], "e and f, over two lines."),
    ]


def test_a_setting_without_a_comment_is_reported(
    configuration: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = (ROOT / "orchestrator" / "config" / "swarm.py").read_text()
    bare = source.replace("    # The Docker engine: a swarm manager's API.\n", "\n")
    assert bare != source
    (tmp_path / "swarm.py").write_text(bare)
    groups = [
        (tmp_path / "swarm.py" if name == "SwarmSettings" else path, name)
        for path, name in configuration.group_sources()
    ]
    monkeypatch.setattr(configuration, "group_sources", lambda: groups)
    _, undocumented = configuration.configuration_page()
    assert undocumented == ["docker_url"]


def _run(report: dict[str, Any], started: str = "2026-01-01T00:00:00+00:00") -> str:
    return json.dumps({"started_at": started, "commit": "abc", "machine": {"cpus": 2}, "report": report})


BURST = {"sites": 30, "seconds": 16.0, "served_at_result": 30, "floor_seconds": 12.0, "ratio_to_floor": 1.33}


def test_each_section_comes_from_its_newest_run(benchmarks: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "2026-01-01T000000Z.json").write_text(_run({"burst": BURST, "truth": {"false_successes": 0}}))
    (tmp_path / "2026-01-02T000000Z.json").write_text(_run({"burst": BURST | {"ratio_to_floor": 1.2}}))
    newest = benchmarks.newest_runs(tmp_path)
    assert newest["burst"][0] == "2026-01-02T000000Z.json"
    assert newest["burst"][2]["ratio_to_floor"] == 1.2
    assert newest["truth"][0] == "2026-01-01T000000Z.json"


def test_a_missed_goal_is_marked(benchmarks: ModuleType) -> None:
    (met,) = benchmarks.SECTIONS["burst"](BURST)
    (missed,) = benchmarks.SECTIONS["burst"](BURST | {"ratio_to_floor": 1.36})
    (late,) = benchmarks.SECTIONS["burst"](BURST | {"served_at_result": 29})
    assert (met.met, missed.met, late.met) == (True, False, False)


def test_links_anchors_and_paths_that_lead_nowhere_are_found(checks: ModuleType, tmp_path: Path) -> None:
    for folder in ("docs", "tests/unit", "orchestrator/bus", "orchestrator/ops/__pycache__"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_a.py").write_text("")
    (tmp_path / "orchestrator" / "bus" / "__init__.py").write_text("")
    (tmp_path / "orchestrator" / "ops" / "__pycache__" / "gone.cpython-311.pyc").write_text("")
    (tmp_path / "orchestrator" / "config.py").write_text("class Settings:\n    pass\n")
    (tmp_path / "docs" / "other.md").write_text("# Other\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n[ok](other.md) [gone](gone.md) [anchor](#title) [no anchor](other.md#nothing-here)\n"
        "`orchestrator/config.py` `bus/nothing.py` `tests/unit/` `public/` `/etc/passwd` `a/b` `ops/gone.py`\n"
        "`orchestrator.config.Settings` `orchestrator.config.Gone` `orchestrator.results` `files.read`\n"
    )
    assert list(checks.stale_references([page], tmp_path)) == [
        "docs/page.md: the link gone.md leads nowhere",
        "docs/page.md: other.md has no heading #nothing-here",
        "docs/page.md: `bus/nothing.py` does not exist",
        "docs/page.md: `ops/gone.py` does not exist",
        "docs/page.md: `orchestrator.config.Gone` does not exist",
    ]


def test_commands_and_options_the_cli_lacks_are_found(checks: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "The orchestrator makes sites. `orchestrator status -o json --site 3` `orchestrator statuz`\n"
        "```sh\norchestrator drain NODE --force   # --not-a-flag in a comment\n"
        'docker exec -it "$r" orchestrator dead-letters replay --all --dry-run\n```\n'
    )
    assert list(checks.stale_commands([page], tmp_path)) == [
        "page.md: `orchestrator statuz` is no command",
        "page.md: `orchestrator drain` takes no --force",
    ]


def test_an_error_code_no_page_explains_is_found(checks: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "contract.md").write_text((ROOT / "docs" / "contract.md").read_text().replace("`not_routed`", "x"))
    (tmp_path / "files.md").write_text((ROOT / "docs" / "files.md").read_text())
    assert list(checks.undocumented_codes(tmp_path)) == [
        "the error code `not_routed` is explained in none of docs/contract.md, docs/files.md"
    ]
    assert list(checks.undocumented_codes()) == []
