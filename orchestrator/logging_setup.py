"""Structured logs: one JSON object per line, so one line per event can be searched and graphed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator


def _upper(value: object) -> object:
    return (value.strip().upper() or None) if isinstance(value, str) else value


# A log level as ORCHESTRATOR_LOG_LEVEL names it, in any case ("" is unset).
Level = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str = "INFO", *, libraries: int = logging.WARNING) -> None:
    """JSON lines on stderr (stdout is a command's own report). `libraries`: the level of the
    clients' own loggers; a one-shot command raises it, as it says itself what went wrong."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log every request or frame at INFO (httpx: one line per Traefik check).
    for noisy in ("aio_pika", "aiormq", "urllib3", "docker", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(libraries, logging.getLevelName(level)))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by ***, longest first (env values are often secrets)."""
    for value in sorted({v for v in secrets if v}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: `log.info("...", extra=fields(site_id=1))`."""
    return {"fields": values}
