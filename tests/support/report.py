"""Figures a suite measured, printed after its results (each suite's `pytest_terminal_summary`)."""

from __future__ import annotations

import pytest


def terminal_section(reporter: pytest.TerminalReporter, title: str, lines: list[str]) -> None:
    if lines:
        reporter.section(title)
        for line in lines:
            reporter.write_line(line)
