"""What every group of settings shares: the environment prefix, frozen values, comma lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ORCHESTRATOR_"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list read from one variable as `a,b,c` (NoDecode: not as JSON).
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


class Group(BaseSettings):
    """A group of settings; `Settings` inherits every group."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")


def with_password(url: str, password_file: Path | None) -> str:
    """`url` with its password replaced by the content of `password_file` (a Docker secret)."""
    if password_file is None:
        return url
    password = password_file.read_text().strip()
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""  # kept as written (already percent-encoded)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))
