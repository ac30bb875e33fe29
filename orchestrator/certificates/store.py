"""The issuer's store: a directory both orchestrator replicas see (the shared storage the sites
root lives on), laid out as

    <tls_dir>/state/<deployment>/records/<name>.json   a record per domain        (0600)
    <tls_dir>/state/<deployment>/orders/<name>.key     the key of an order under way (0600)
    <tls_dir>/state/<deployment>/ledger.json           the rate budget's ledger
    <tls_dir>/state/<deployment>/account.json          the ACME account: URI and key (0600)
    <tls_dir>/state/<deployment>/lease.json            which replica issues, until when
    <tls_dir>/traefik/<deployment>@<name>.yml          what Traefik serves (certificate, key) (0600)
    <tls_dir>/http01/<token>                           an HTTP-01 challenge's answer (public)

Every file is written whole to a temporary name and renamed into place, so a reader (Traefik, the
other replica) sees the old file or the new one, never a part. Names are validated host names
(letters, digits, dots, hyphens), so they are safe in paths; a name too long for a file name is
stored under its digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from pydantic import ValidationError

from orchestrator.certificates.budget import Ledger
from orchestrator.certificates.records import Record

_NAME = re.compile(r"[a-z0-9*][a-z0-9.-]{0,252}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII)
PRIVATE, PUBLIC = 0o600, 0o644


class Store:
    def __init__(self, root: Path, deployment: str) -> None:
        self.root = root
        self.deployment = deployment
        self.state = root / "state" / deployment
        self.traefik = root / "traefik"
        self.http01 = root / "http01"

    def prepare(self) -> None:
        for path, mode in ((self.state / "records", 0o700), (self.state / "orders", 0o700)):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        self.traefik.mkdir(parents=True, exist_ok=True)
        self.http01.mkdir(parents=True, exist_ok=True)

    # --- records ----------------------------------------------------------------------------
    def records(self) -> dict[str, Record]:
        found: dict[str, Record] = {}
        with contextlib.suppress(FileNotFoundError):
            for path in (self.state / "records").iterdir():
                if path.suffix == ".json" and (record := self._load(path)) is not None:
                    found[record.name] = record
        return found

    def record(self, name: str) -> Record | None:
        return self._load(self._record_path(name))

    def save(self, record: Record) -> None:
        _write(self._record_path(record.name), record.model_dump_json().encode(), PRIVATE)

    def drop(self, name: str) -> None:
        for path in (self._record_path(name), self._order_key_path(name), self.traefik_path(name)):
            path.unlink(missing_ok=True)

    # --- an order under way -----------------------------------------------------------------
    def order_key(self, name: str) -> bytes | None:
        try:
            return self._order_key_path(name).read_bytes()
        except FileNotFoundError:
            return None

    def save_order_key(self, name: str, key_pem: bytes) -> None:
        _write(self._order_key_path(name), key_pem, PRIVATE)

    def drop_order_key(self, name: str) -> None:
        self._order_key_path(name).unlink(missing_ok=True)

    # --- the ledger and the account -----------------------------------------------------------
    def ledger(self) -> Ledger:
        try:
            return Ledger.model_validate_json((self.state / "ledger.json").read_bytes())
        except (FileNotFoundError, ValidationError):
            return Ledger()

    def save_ledger(self, ledger: Ledger) -> None:
        _write(self.state / "ledger.json", ledger.model_dump_json().encode(), PRIVATE)

    def account(self) -> bytes | None:
        try:
            return (self.state / "account.json").read_bytes()
        except FileNotFoundError:
            return None

    def save_account(self, data: bytes) -> None:
        _write(self.state / "account.json", data, PRIVATE)

    def lease(self) -> tuple[str, float] | None:
        """(holder, expires at) of the issuer's lease, if any."""
        try:
            data = json.loads((self.state / "lease.json").read_bytes())
            return str(data["holder"]), float(data["expires"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def save_lease(self, holder: str, expires: float) -> None:
        self.state.mkdir(parents=True, exist_ok=True)  # the first thing a replica writes
        _write(self.state / "lease.json", json.dumps({"holder": holder, "expires": expires}).encode(), PRIVATE)

    # --- what Traefik reads ---------------------------------------------------------------------
    def traefik_path(self, name: str) -> Path:
        return self.traefik / f"{self.deployment}@{_file_name(name)}.yml"

    def publish(self, name: str, config: str) -> None:
        _write(self.traefik_path(name), config.encode(), PRIVATE)

    def unpublish(self, name: str) -> None:
        self.traefik_path(name).unlink(missing_ok=True)

    def published(self) -> set[Path]:
        with contextlib.suppress(FileNotFoundError):
            return {p for p in self.traefik.iterdir() if p.name.startswith(f"{self.deployment}@")}
        return set()

    # --- HTTP-01 ------------------------------------------------------------------------------
    def put_challenge(self, token: str, answer: str) -> None:
        _write(self._challenge_path(token), answer.encode(), PUBLIC)

    def drop_challenge(self, token: str) -> None:
        self._challenge_path(token).unlink(missing_ok=True)

    # --- paths --------------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.state / "records" / f"{_file_name(name)}.json"

    def _order_key_path(self, name: str) -> Path:
        return self.state / "orders" / f"{_file_name(name)}.key"

    def _challenge_path(self, token: str) -> Path:
        if not _TOKEN.fullmatch(token):
            raise ValueError("an ACME token is base64url")
        return self.http01 / token

    @staticmethod
    def _load(path: Path) -> Record | None:
        try:
            return Record.model_validate_json(path.read_bytes())
        except (FileNotFoundError, ValidationError):
            return None


def _file_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("not a host name")
    return name if len(name) <= 200 else "sha256-" + hashlib.sha256(name.encode()).hexdigest()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Whole or not at all: a temporary file (a name no reader picks up), fsynced, renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
