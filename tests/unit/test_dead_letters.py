from __future__ import annotations

from orchestrator.bus.dead_letters import DeadLetter, _replay_target
from orchestrator.commands.dead_letters import as_table
from orchestrator.config import Settings


def letter(**overrides: object) -> DeadLetter:
    values: dict[str, object] = {
        "id": "id-1",
        "routing_key": "site.created",
        "exchange": "director.sites",
        "site_id": 1,
        "reason": "invalid_event",
        "message": "",
        "attempts": 1,
        "first_failure": None,
        "last_failure": None,
        "age_seconds": None,
        "publisher": "director",
    }
    return DeadLetter(**{**values, **overrides})  # type: ignore[arg-type]


def test_the_table_escapes_control_characters_a_publisher_chose() -> None:
    forged = "x\r\n\x1b[2Jfake-id  site.deleted  1  replayed\u202e"
    table = as_table([letter(id=forged, routing_key="site.created\x1b[31m")])
    lines = table.splitlines()
    assert len(lines) == 2  # the header and one row: no forged row
    assert "\x1b" not in table and "\r" not in table and "\u202e" not in table
    assert "\\x1b[2J" in lines[1] and "\\r\\n" in lines[1] and "\\u202e" in lines[1]


def test_the_table_keeps_printable_text_as_is() -> None:
    row = as_table([letter(id="évènement-1")]).splitlines()[1]
    assert row.startswith("évènement-1  site.created")


def test_replay_goes_only_to_the_inbound_exchange() -> None:
    settings = Settings()
    assert _replay_target("director.sites", settings) == "director.sites"
    for forged in ("amq.topic", "orchestrator.results", "orchestrator.requeue", ""):
        assert _replay_target(forged, settings) == settings.inbound_exchange


def test_a_file_request_keeps_its_exchange_so_replay_can_skip_it() -> None:
    settings = Settings()
    assert _replay_target("director.files", settings) == "director.files"
