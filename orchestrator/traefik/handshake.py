"""Which certificate Traefik presents for a name: a TLS handshake with that name as SNI on the
HTTPS entrypoint. The issuer reports a name as served only once this shows the certificate it
wrote (Traefik picks the file up within its provider throttle, about two seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time


class TlsProbe:
    def __init__(self, address: str) -> None:
        """`address`: "host:port" of Traefik's HTTPS entrypoint."""
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        # Only to read what is presented: the fingerprint is compared, not the chain trusted.
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    async def presented(self, name: str, timeout: float = 3.0) -> str | None:
        """The SHA-256 (hex) of the leaf certificate presented for `name`; None if no handshake."""
        writer = None
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(self.host, self.port, ssl=self._context, server_hostname=name)
                sslobj = writer.get_extra_info("ssl_object")
                der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
                return hashlib.sha256(der).hexdigest() if der else None
        except (OSError, TimeoutError, ssl.SSLError):
            return None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()

    async def wait_presented(self, name: str, fingerprint: str, timeout: float) -> bool:
        """Whether Traefik presents exactly that certificate for `name` within `timeout`."""
        deadline = time.monotonic() + timeout
        pause = 0.1
        while True:
            if await self.presented(name) == fingerprint:
                return True
            if time.monotonic() + pause > deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 1.5)
