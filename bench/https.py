"""HTTPS: how long a new site waits for its certificate, what a TLS handshake through Traefik costs,
and what managed certificates add to an idle site (bench/run.py's `https` section).

created   `site.created` until the first HTTPS answer verified against the local CA's root, against
          the first plain HTTP answer of the same site in the same run (both polled from the
          publish on); sites one after another, so each order is the CA's only one.
handshake full TLS handshakes per second (new connection, no resumption) through Traefik's HTTPS
          entrypoint for a site's name, against a bare TLS server (nginx, the same certificate
          and key, as many workers as cores) on the same machine; the same client for both.
idle      machine CPU with N idle, serving sites whose names all have certificates (the redirect
          router and certificate file of each in Traefik's file provider, the websecure router,
          the issuer's schedule), minus with none, per site: comparable with the idle section.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import TRAEFIK, Bench, log, page
from scale import idle_levels

from harness.director import site_event, write_site
from harness.tls import HTTPS, ROOT_PEM, https_get

BARE_PORT = 18999
CLIENT_THREADS = 4


def https_host(site_id: int) -> str:
    return f"s{site_id}.tls.bench.example.com"


async def _first(check: Any, timeout: float = 120) -> float:
    """Seconds until `check()` is true, polled every 20 ms."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise TimeoutError("not answered in time")


async def created_to_https(bench: Bench, sites: list[int]) -> dict[str, Any]:
    http_s, https_s, results = [], [], []
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=2) as client:
        for site_id in sites:
            name = https_host(site_id)
            write_site(bench.root, site_id, page=page(site_id))
            event = site_event("site.created", site_id, 1, domains=[name])

            async def http_ok(name: str = name, site_id: int = site_id) -> bool:
                try:
                    answer = await client.get("/", headers={"Host": name})
                except httpx.HTTPError:
                    return False
                # 200 from the site; once the certificate is served, Traefik's redirect (301 for a GET)
                # follows the site's own answer, so it too means HTTP was served before.
                return (answer.status_code == 200 and page(site_id) in answer.text) or answer.status_code == 301

            async def https_ok(name: str = name, site_id: int = site_id) -> bool:
                try:
                    answer = await https_get(name, "/", timeout=2)
                except (httpx.HTTPError, ssl.SSLError):
                    return False
                return answer.status_code == 200 and page(site_id) in answer.text

            await bench.director.publish(event)
            first_http, first_https = await asyncio.gather(_first(http_ok), _first(https_ok))
            result = await bench.results.wait_for(event["event_id"], timeout=120)
            assert result.type == "site.deployed" and result.tls is not None, result
            results.append([s.domain for s in result.tls.served] == [name])
            http_s.append(first_http)
            https_s.append(first_https)
            log(f"created: {name} http {first_http:.2f} s, https {first_https:.2f} s")
    return {
        "sites": len(sites),
        "served_at_result": sum(results),
        "http_seconds_median": round(statistics.median(http_s), 2),
        "https_seconds_median": round(statistics.median(https_s), 2),
        "https_seconds_max": round(max(https_s), 2),
        "https_after_http_seconds_median": round(
            statistics.median(b - a for a, b in zip(http_s, https_s, strict=True)), 2
        ),
        "ratio": round(statistics.median(https_s) / statistics.median(http_s), 2),
    }


def handshakes_per_second(address: tuple[str, int], name: str, seconds: float) -> float:
    """Full handshakes (TLS 1.3, no resumption) per second from CLIENT_THREADS threads."""
    context = ssl.create_default_context(cafile=str(ROOT_PEM))
    context.options |= ssl.OP_NO_TICKET
    count, stop = [0] * CLIENT_THREADS, time.monotonic() + seconds

    def client(slot: int) -> None:
        while time.monotonic() < stop:
            with socket.create_connection(address, timeout=5) as raw, context.wrap_socket(raw, server_hostname=name):
                count[slot] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENT_THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(count) / (time.monotonic() - started)


def bare_tls_server(chain_pem: str, key_pem: str, workdir: Path) -> subprocess.Popen[bytes]:
    """nginx on 127.0.0.1:BARE_PORT with the same certificate and the Traefik entrypoint's TLS."""
    (workdir / "chain.pem").write_text(chain_pem)
    (workdir / "key.pem").write_text(key_pem)
    (workdir / "key.pem").chmod(0o600)
    (workdir / "nginx.conf").write_text(
        f"""worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body; proxy_temp_path {workdir}/proxy; fastcgi_temp_path {workdir}/fcgi;
  uwsgi_temp_path {workdir}/uwsgi; scgi_temp_path {workdir}/scgi;
  server {{
    listen 127.0.0.1:{BARE_PORT} ssl;
    ssl_certificate {workdir}/chain.pem;
    ssl_certificate_key {workdir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / {{ return 200 "ok"; }}
  }}
}}
"""
    )
    process = subprocess.Popen(["nginx", "-c", str(workdir / "nginx.conf"), "-p", str(workdir)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", BARE_PORT), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the bare TLS server did not start")


def handshakes(deployment: str, tls_dir: Path, name: str, seconds: float, runs: int) -> dict[str, Any]:
    published = json.loads((tls_dir / "traefik" / f"{deployment}@{name}.yml").read_text())
    certificate = published["tls"]["certificates"][0]
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        server = bare_tls_server(certificate["certFile"], certificate["keyFile"], Path(tmp))
        try:
            traefik, bare = [], []
            for _ in range(runs):  # interleaved: the machine's noise hits both alike
                traefik.append(handshakes_per_second(HTTPS, name, seconds))
                bare.append(handshakes_per_second(("127.0.0.1", BARE_PORT), name, seconds))
        finally:
            server.terminate()
            server.wait(10)
    return {
        "seconds": seconds,
        "runs": runs,
        "client_threads": CLIENT_THREADS,
        "traefik_per_second": round(statistics.median(traefik)),
        "bare_per_second": round(statistics.median(bare)),
        "ratio": round(statistics.median(traefik) / statistics.median(bare), 2),
    }


async def https_section(
    bench: Bench, sites: list[int], handshake_seconds: float, idle: list[int], window: float
) -> dict[str, Any]:
    log(f"https: site.created until verified HTTPS, {len(sites)} sites one after another")
    report: dict[str, Any] = {"created": await created_to_https(bench, sites)}
    log("https: TLS handshakes through Traefik against a bare TLS server")
    deployment = bench.process.env["ORCHESTRATOR_DEPLOYMENT"]
    tls_dir = Path(bench.process.env.get("ORCHESTRATOR_TLS_DIR", "/var/lib/director-tls"))
    report["handshake"] = await asyncio.to_thread(
        handshakes, deployment, tls_dir, https_host(sites[0]), handshake_seconds, 3
    )
    if idle:
        # The idle section's sites (names under example.com): here each gets its certificate.
        report["idle"] = await idle_levels(bench, idle, window)
    return report


def forget_certificates(bench: Bench) -> None:
    """The benchmark deployment's certificate files and records (its sites are gone)."""
    deployment = bench.process.env["ORCHESTRATOR_DEPLOYMENT"]
    tls_dir = Path(bench.process.env.get("ORCHESTRATOR_TLS_DIR", "/var/lib/director-tls"))
    for path in (tls_dir / "traefik").glob(f"{deployment}@*"):
        path.unlink(missing_ok=True)
    shutil.rmtree(tls_dir / "state" / deployment, ignore_errors=True)


def https_table(h: dict[str, Any]) -> list[tuple[str, str, str]]:
    """bench/run.py's summary rows of this section."""
    c, s = h["created"], h["handshake"]
    rows = [
        ("https", f"created -> verified HTTPS median {c['https_seconds_median']} s (max {c['https_seconds_max']} s)",
         f"{c['ratio']}x HTTP ({c['http_seconds_median']} s)"),
        ("https", f"{s['traefik_per_second']} handshakes/s through Traefik",
         f"{s['ratio']}x a bare TLS server ({s['bare_per_second']}/s)"),
    ]  # fmt: skip
    for n, per in h.get("idle", {}).get("per_site_mc", {}).items():
        rows.append(("https", f"{n} idle sites with certificates: {per['machine_mc']} mc/site (machine)",
                     f"Docker {per['docker_mc']} mc/site, Traefik {per['traefik_mc']} mc/site"))  # fmt: skip
    return rows
