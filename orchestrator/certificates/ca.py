"""The certificate authority, over ACME (RFC 8555) with certbot's `acme` library: HTTP-01 orders,
one name each, on one account per deployment.

`Ca` is the protocol the issuer uses; `AcmeCa` speaks to a real CA (Let's Encrypt, or pebble in
the local stack); tests give the issuer an in-memory one. The library is synchronous (requests):
orders run one at a time on a worker thread (the CA's rate limits, not our throughput, bound how
fast certificates come). An order's URL is handed to `on_order` as soon as the CA made it, so a
replica taking over fetches that order instead of placing another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from orchestrator.certificates.records import Held
from orchestrator_contract.certificates import CertificateErrorCode

# The library logs whole requests and answers at DEBUG: never ours.
logging.getLogger("acme").setLevel(logging.WARNING)
ORDER_TIMEOUT = 90.0
USER_AGENT = "director-orchestrator"
# ACME problem types (urn:ietf:params:acme:error:<code>) and what they mean for the owner.
_VALIDATION = {"connection", "dns", "unauthorized", "incorrectResponse", "tls"}
_CODES = {
    "rateLimited": CertificateErrorCode.RATE_LIMITED,
    "caa": CertificateErrorCode.CAA_FORBIDS,
    "rejectedIdentifier": CertificateErrorCode.NOT_ISSUABLE,
    "unsupportedIdentifier": CertificateErrorCode.NOT_ISSUABLE,
} | {code: CertificateErrorCode.VALIDATION_FAILED for code in _VALIDATION}


class CaError(Exception):
    def __init__(self, code: CertificateErrorCode, message: str, *, failed_validation: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # It counts against the CA's failed-validation limit (the budget records it).
        self.failed_validation = failed_validation


class Challenges(Protocol):
    def put_challenge(self, token: str, answer: str) -> None: ...
    def drop_challenge(self, token: str) -> None: ...


class Accounts(Protocol):
    def account(self) -> bytes | None: ...
    def save_account(self, data: bytes) -> None: ...


class Ca(Protocol):
    async def issue(self, name: str, key_pem: bytes, order_url: str | None, on_order: Callable[[str], None]) -> str:
        """The full chain (PEM) of a certificate for `name` on the key `key_pem`, resuming the order
        at `order_url` when there is one. Raises CaError."""


def new_key() -> bytes:
    """A certificate's private key: ECDSA P-256 (what browsers handshake fastest with)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def held_of(fullchain_pem: str) -> Held:
    leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
    return Held(
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
    )


@dataclass
class _Session:
    directory_url: str
    acme: client.ClientV2
    key: JWK


class AcmeCa:
    def __init__(
        self,
        directory_url: str,
        contact: str,
        ca_bundle: Path | None,
        accounts: Accounts,
        challenges: Challenges,
        timeout: float = ORDER_TIMEOUT,
    ) -> None:
        self.directory_url = directory_url
        self.contact = contact
        self.verify: bool | str = str(ca_bundle) if ca_bundle else True
        self.accounts = accounts
        self.challenges = challenges
        self.timeout = timeout
        self._session: _Session | None = None
        self._lock = threading.Lock()

    async def issue(self, name: str, key_pem: bytes, order_url: str | None, on_order: Callable[[str], None]) -> str:
        return await asyncio.to_thread(self._issue_once, name, key_pem, order_url, on_order)

    def _issue_once(self, name: str, key_pem: bytes, order_url: str | None, on_order: Callable[[str], None]) -> str:
        with self._lock:
            try:
                try:
                    return self._issue(name, key_pem, order_url, on_order)
                except messages.Error as exc:
                    if exc.code != "accountDoesNotExist":
                        raise
                    # The CA forgot the account (pebble does at every restart): a new one.
                    self._session = None
                    self.accounts.save_account(b"{}")
                    return self._issue(name, key_pem, None, on_order)
            except messages.Error as exc:
                code = _CODES.get(exc.code or "", CertificateErrorCode.CA_UNAVAILABLE)
                raise CaError(code, _problem(exc), failed_validation=exc.code in _VALIDATION) from None
            except errors.ValidationError as exc:
                raise _validation_error(exc) from None
            except (requests.RequestException, errors.Error, ValueError) as exc:
                raise CaError(CertificateErrorCode.CA_UNAVAILABLE, f"the CA did not answer: {exc}"[:500]) from None

    def _issue(self, name: str, key_pem: bytes, order_url: str | None, on_order: Callable[[str], None]) -> str:
        session = self._account()
        acme = session.acme
        csr = crypto_util.make_csr(key_pem, [name])
        deadline = time.monotonic() + self.timeout
        order = self._resume(acme, order_url, csr) if order_url else None
        if order is None:
            order = acme.new_order(csr)
            on_order(order.uri)
        if order.body.status in (messages.STATUS_PENDING, messages.STATUS_READY):
            tokens = self._answer(acme, session.key, order)
            try:
                self._wait_authorizations(acme, order, deadline)
            finally:
                for token in tokens:
                    self.challenges.drop_challenge(token)
        return self._finalize(acme, order, deadline)

    def _account(self) -> _Session:
        if self._session is not None:
            return self._session
        # verify_ssl goes to requests' `verify`, which takes a CA bundle's path as well as a bool.
        net = client.ClientNetwork(None, alg=ES256, verify_ssl=self.verify, user_agent=USER_AGENT)  # type: ignore[arg-type]
        acme = client.ClientV2(client.ClientV2.get_directory(self.directory_url, net), net)
        saved = _json(self.accounts.account())
        key: JWK
        if saved.get("directory") == self.directory_url and saved.get("uri") and saved.get("key"):
            key = JWKEC.from_json(saved["key"])  # type: ignore[assignment]  # josepy types it as its base
            net.key = key
            net.account = messages.RegistrationResource(body=messages.Registration(), uri=saved["uri"])
        else:
            key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
            net.key = key
            fields: dict[str, Any] = {"terms_of_service_agreed": True}
            if self.contact:
                fields["email"] = self.contact
            regr = acme.new_account(messages.NewRegistration.from_data(**fields))
            data = {"directory": self.directory_url, "uri": regr.uri, "key": key.to_json()}
            self.accounts.save_account(json.dumps(data).encode())
        self._session = _Session(self.directory_url, acme, key)
        return self._session

    def _resume(self, acme: client.ClientV2, url: str, csr: bytes) -> messages.OrderResource | None:
        """The order at `url` if it can still lead to a certificate (else None: a new order)."""
        try:
            body = messages.Order.from_json(acme._post_as_get(url).json())
        except messages.Error:
            return None  # gone (expired, or a CA that forgot it)
        if body.status in (messages.STATUS_INVALID, None) or body.status.name == "expired":
            return None
        authorizations = [acme._authzr_from_response(acme._post_as_get(u), uri=u) for u in body.authorizations]
        return messages.OrderResource(body=body, uri=url, authorizations=authorizations, csr_pem=csr)

    def _answer(self, acme: client.ClientV2, key: JWK, order: messages.OrderResource) -> list[str]:
        tokens = []
        for authz in order.authorizations:
            if authz.body.status != messages.STATUS_PENDING:
                continue
            challenge = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if challenge is None:
                raise CaError(CertificateErrorCode.NOT_ISSUABLE, "the CA offers no HTTP-01 challenge for this name")
            response, answer = challenge.response_and_validation(key)
            token = challenge.chall.encode("token")
            self.challenges.put_challenge(token, answer)
            tokens.append(token)
            acme.answer_challenge(challenge, response)
        return tokens

    def _wait_authorizations(self, acme: client.ClientV2, order: messages.OrderResource, deadline: float) -> None:
        for url in order.body.authorizations:

            def fetch(url: str = url) -> messages.AuthorizationResource:
                return acme._authzr_from_response(acme._post_as_get(url), uri=url)

            authz = _poll(fetch, deadline)
            if authz.body.status != messages.STATUS_VALID:
                raise errors.ValidationError([authz])

    def _finalize(self, acme: client.ClientV2, order: messages.OrderResource, deadline: float) -> str:
        """Finalize (once the order is ready) and download the certificate (once it is valid)."""
        pause = 0.1
        while True:
            body = messages.Order.from_json(acme._post_as_get(order.uri).json())
            if body.status == messages.STATUS_VALID and body.certificate is not None:
                return str(acme._post_as_get(body.certificate).text)
            if body.status == messages.STATUS_INVALID:
                raise CaError(
                    CertificateErrorCode.CA_UNAVAILABLE,
                    _problem(body.error) if body.error else "the CA abandoned the order",
                )
            if body.status == messages.STATUS_READY:
                try:
                    acme.begin_finalization(order)
                except messages.Error as exc:
                    if exc.code != "orderNotReady":
                        raise
            if time.monotonic() + pause > deadline:
                raise errors.TimeoutError()
            time.sleep(pause)
            pause = min(2.0, pause * 2)


def _poll(fetch: Callable[[], messages.AuthorizationResource], deadline: float) -> messages.AuthorizationResource:
    """Fetch until no longer pending: quickly first (a CA that validates at once answers within a
    few hundred ms), then at most every 2 s."""
    pause = 0.1
    while True:
        authz = fetch()
        if authz.body.status != messages.STATUS_PENDING:
            return authz
        if time.monotonic() + pause > deadline:
            raise errors.TimeoutError()
        time.sleep(pause)
        pause = min(2.0, pause * 2)


def _validation_error(exc: errors.ValidationError) -> CaError:
    for authz in exc.failed_authzrs:
        for challenge in authz.body.challenges:
            if challenge.error is not None:
                code = _CODES.get(challenge.error.code or "", CertificateErrorCode.VALIDATION_FAILED)
                return CaError(code, _problem(challenge.error), failed_validation=True)
    return CaError(CertificateErrorCode.VALIDATION_FAILED, "the CA could not validate the name", failed_validation=True)


def _problem(error: messages.Error) -> str:
    return f"{error.code or 'error'}: {error.detail or ''}".strip()[:500]


def _json(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
