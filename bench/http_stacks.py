"""Delivery's HTTP stack, chosen by measurement: aiohttp beside ASGI servers.

Every stack serves the same framework-free function (`deliver`), which does what the
delivery service does for a request once its lookups are cached: parse the path and
query with `imagepipe.delivery`, verify the HMAC, look the rendition up in a dict, answer
`If-None-Match`, and build the real header set. Only the translation to and from each
server's interface differs. One server process each, on one port, driven by `wrk`
(64 connections, one wrk thread; a Lua `done` hook prints the latency percentiles):

- aiohttp: a `web.Application` on asyncio's loop (the baseline), and on uvloop;
- uvicorn: a raw ASGI app, httptools parser, uvloop;
- granian (ASGI): the same ASGI app, one worker, one runtime thread, uvloop;
- granian (RSGI): granian's own interface, same settings.

Workloads: "card" (GET `.../card.webp?v=&k=&s=`, a 30 KB body from memory), "zoom-stream"
(a 600 KB body streamed in 64 KiB chunks from an async generator that yields to the loop
between chunks, as an S3 read does) and "304" (the card with a matching If-None-Match).
Each workload's cells are taken stack after stack, and the best of two rounds counts: on a
shared machine others' work only takes throughput away. The server's CPU (with its worker
processes) is measured too: on two cores wrk takes one, and a server with threads of its
own can take more than the one Python thread has.

Then, per stack, what throughput does not show: HEAD answered with the GET's headers and
no body; backpressure (server memory growth while a client does not read a 64 MiB
stream); chunks still read from "storage" after a client left that stream; a 64 MiB
stream in flight at SIGTERM completed, and how the process ends; tracebacks and Rust
panics the server printed; and again, each time on a fresh server, a client leaving a
stream and SIGTERM with another in flight (`--shutdowns` in all). `choice` is aiohttp
unless a stack that passes all of those serves the card more than 1.3x faster.

    .venv/bin/python -m bench.http_stacks [--seconds 10] [--rounds 2] [--shutdowns 6]
                                          [--stacks aiohttp,uvicorn,...]

IMAGEPIPE_BENCH_HTTP_SECONDS sets the seconds per cell (2 for a smoke run).
Last line: `summary: aiohttp_card_rps=… uvicorn_card_rps=… granian_card_rps=… … choice=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
import uvloop
from aiohttp import web
from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.server.embed import Server as EmbeddedGranian
from rich.console import Console
from rich.table import Table

from bench.common import (
    child_pids,
    machine_busy_seconds,
    print_summary,
    rss_mib,
    tree_cpu_seconds,
)
from bench.wrk import run_wrk
from imagepipe.delivery import canonical_string, parse_path, parse_query, signed_url, verify
from services.shared.logs import new_request_id

TENANT = "6f1c1b1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e"
ASSET = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
KEY_ID = "00ff00ff00ff00ff"
SECRET = "bench-signing-secret-0123456789abcdef"
CHUNK = 64 * 1024
CARD_BYTES = 30 * 1024
ZOOM_BYTES = 600 * 1024
HUGE_BYTES = 64 * 1024 * 1024  # the backpressure and shutdown probes' body
CONNECTIONS = 64
SECONDS_ENV = "IMAGEPIPE_BENCH_HTTP_SECONDS"
BASELINE = "aiohttp"
# An ASGI stack is taken over aiohttp only past this ratio on the card (see docs/performance.md).
DECISIVE_RATIO = 1.3

Header = Callable[[str], str | None]


@dataclass(frozen=True)
class Rendition:
    content_type: str
    version: str  # 16 hex digits, as rendition_version gives
    body: bytes
    streamed: bool  # False: served from memory (the hot cache); True: chunks, as from S3
    repeat: int = 1  # the body sent this many times (the probes' 64 MiB)

    @property
    def size(self) -> int:
        return len(self.body) * self.repeat

    @property
    def etag(self) -> str:
        return f'"{self.version}{self.version}"'  # stands in for the content hash


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


def _pattern(size: int, seed: int) -> bytes:
    return bytes((seed + i * 7) % 251 for i in range(size))


# (tenant, asset, preset, format) -> rendition: the lookup the service caches.
RENDITIONS: dict[tuple[str, str, str, str], Rendition] = {
    (TENANT, ASSET, "card", "webp"): Rendition(
        "image/webp", "a1b2c3d4e5f60718", _pattern(CARD_BYTES, 1), streamed=False
    ),
    (TENANT, ASSET, "card", "jpeg"): Rendition(
        "image/jpeg", "b1b2c3d4e5f60718", _pattern(CARD_BYTES, 2), streamed=False
    ),
    (TENANT, ASSET, "zoom", "webp"): Rendition(
        "image/webp", "c1b2c3d4e5f60718", _pattern(ZOOM_BYTES, 3), streamed=True
    ),
    (TENANT, ASSET, "huge", "webp"): Rendition(
        "image/webp", "d1b2c3d4e5f60718", _pattern(CHUNK, 4), True, HUGE_BYTES // CHUNK
    ),
}
SIGNING_KEYS: dict[str, tuple[str, str]] = {KEY_ID: (TENANT, SECRET)}  # key id -> tenant, secret


def _error(status: int, reason: str, message: str) -> Reply:
    body = json.dumps({"error": {"status": status, "reason": reason, "message": message}})
    headers = [("Content-Type", "application/json"), ("X-Request-Id", new_request_id())]
    return Reply(status, headers, body.encode())


def _negotiate(tenant: str, asset: str, preset: str, accept: str) -> str | None:
    """The best format rendered that the browser accepts: AVIF, WebP, then JPEG."""
    for image_format in ("avif", "webp", "jpeg"):
        if (tenant, asset, preset, image_format) in RENDITIONS and (
            f"image/{image_format}" in accept or image_format == "jpeg"
        ):
            return image_format
    return None


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


# Chunks read from "storage" so far: what a stream costs after its client has gone.
PRODUCED = {"chunks": 0}
PRODUCED_PATH = "/bench/produced"


async def _chunks(rendition: Rendition) -> AsyncIterator[bytes]:
    for _ in range(rendition.repeat):
        for start in range(0, len(rendition.body), CHUNK):
            PRODUCED["chunks"] += 1
            yield rendition.body[start : start + CHUNK]
            await asyncio.sleep(0)  # an S3 read gives the loop back between chunks


def deliver(method: str, path: str, query: str, header: Header) -> Reply:
    """One delivery request, whatever server carries it."""
    if path == PRODUCED_PATH:
        return Reply(200, [("Content-Type", "application/json")], json.dumps(PRODUCED).encode())
    parsed = parse_path(path)
    if parsed is None:
        return _error(404, "PATH_INVALID", "not a delivery path: /v1/<tenant>/<asset>/<preset>")
    signed = parse_query(dict(parse_qsl(query)))
    if signed is None or signed.key_id is None or signed.signature is None:
        return _error(403, "SIGNATURE_INVALID", "the URL is not signed: ask for a delivery URL")
    tenant_key = SIGNING_KEYS.get(signed.key_id)
    canonical = canonical_string(
        path, version=signed.version, expires=signed.expires, key_id=signed.key_id
    )
    if tenant_key is None or tenant_key[0] != parsed.tenant_id:
        return _error(403, "SIGNATURE_INVALID", "unknown signing key: ask for a new URL")
    if not verify(tenant_key[1], canonical, signed.signature):
        return _error(403, "SIGNATURE_INVALID", "the signature does not match: ask for a new URL")
    negotiated = parsed.format is None
    image_format = parsed.format or _negotiate(
        parsed.tenant_id, parsed.asset_id, parsed.preset, header("accept") or ""
    )
    rendition = RENDITIONS.get(
        (parsed.tenant_id, parsed.asset_id, parsed.preset, image_format or "")
    )
    if rendition is None or (signed.version not in (None, rendition.version)):
        return _error(404, "RENDITION_NOT_FOUND", "no such rendition: check the asset and preset")
    headers = [
        ("ETag", rendition.etag),
        ("Cache-Control", "public, max-age=31536000, immutable"),
        ("X-Request-Id", header("x-request-id") or new_request_id()),
    ]
    if negotiated:
        headers.append(("Vary", "Accept"))
    if _etag_matches(header("if-none-match"), rendition.etag):
        return Reply(304, headers)
    headers += [
        ("Content-Type", rendition.content_type),
        ("Content-Length", str(rendition.size)),
        ("Accept-Ranges", "bytes"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if method == "HEAD":
        return Reply(200, headers)
    if rendition.streamed:
        return Reply(200, headers, stream=_chunks(rendition))
    return Reply(200, headers, body=rendition.body)


# --- aiohttp -------------------------------------------------------------------------


def aiohttp_application() -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        reply = deliver(request.method, request.path, request.query_string, request.headers.get)
        if reply.stream is None:
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        try:
            await response.prepare(request)  # raises too when the client has already gone
            async for chunk in reply.stream:
                await response.write(chunk)  # waits while the socket's buffer is full
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away (wrk at the end of a cell): stop reading, quietly
        return response

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    return app


async def serve_aiohttp(port: int) -> None:
    runner = web.AppRunner(aiohttp_application(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, shutdown_timeout=60).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()  # stops listening, then waits for requests in flight


# --- ASGI (uvicorn, granian) ------------------------------------------------------------

Message = dict[str, Any]


async def asgi_app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Any]
) -> None:
    if scope["type"] != "http":
        return
    raw_headers: list[tuple[bytes, bytes]] = scope["headers"]

    def header(name: str) -> str | None:
        wanted = name.encode()
        return next((v.decode("latin-1") for k, v in raw_headers if k == wanted), None)

    query = scope["query_string"].decode("latin-1")
    reply = deliver(scope["method"], scope["path"], query, header)
    headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return
    async for chunk in reply.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """granian's own interface: headers and bodies without per-message dicts."""
    reply = deliver(scope.method, scope.path, scope.query_string, scope.headers.get)
    if reply.stream is None:
        protocol.response_bytes(reply.status, reply.headers, reply.body)
        return
    transport = protocol.response_stream(reply.status, reply.headers)
    async for chunk in reply.stream:
        await transport.send_bytes(chunk)


async def serve_granian_embedded(port: int) -> None:
    """granian's embeddable server in a loop of our own, as the services' bootstrap runs."""
    embedded = EmbeddedGranian(
        asgi_app, port=port, interface=Interfaces.ASGINL, runtime_threads=1, log_enabled=False
    )
    serving = asyncio.create_task(embedded.serve())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    embedded.stop()  # type: ignore[no-untyped-call]  # granian leaves it unannotated
    await serving


def serve(stack: str, port: int) -> None:
    """Run one stack's server in this process until SIGTERM."""
    if stack in ("aiohttp", "aiohttp-uvloop"):
        runner = uvloop.run if stack == "aiohttp-uvloop" else asyncio.run
        runner(serve_aiohttp(port))
    elif stack == "granian-embed":
        asyncio.run(serve_granian_embedded(port))
    elif stack == "uvicorn":
        uvicorn.run(
            "bench.http_stacks:asgi_app",
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
    else:
        rsgi = stack == "granian-rsgi"
        Granian(
            "bench.http_stacks:" + ("rsgi_app" if rsgi else "asgi_app"),
            port=port,
            interface=Interfaces.RSGI if rsgi else Interfaces.ASGINL,
            workers=1,
            runtime_threads=1,
            loop=Loops.uvloop,
            http=HTTPModes.http1,
            log_enabled=False,
        ).serve()


# --- the measurement ------------------------------------------------------------------

STACKS = ("aiohttp", "aiohttp-uvloop", "uvicorn", "granian", "granian-embed", "granian-rsgi")
PACKAGES = {
    "aiohttp": ("aiohttp",),
    "aiohttp-uvloop": ("aiohttp", "uvloop"),
    "uvicorn": ("uvicorn", "httptools", "uvloop"),
    "granian": ("granian", "uvloop"),
    "granian-embed": ("granian",),
    "granian-rsgi": ("granian", "uvloop"),
}
WORKLOADS = ("card", "zoom-stream", "304")


@dataclass
class Cell:
    rps: float
    mb_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the server's CPU per request


@dataclass
class Probes:
    head_ok: bool = False
    backpressure_mib: float = 0.0
    chunks_after_client_left: int = 0
    shutdown_complete: bool = False
    shutdown_s: float = 0.0
    exit_code: int | None = None
    crashes: int = 0  # tracebacks and Rust panics the server printed
    clean_shutdowns: int = 0  # of `shutdowns` SIGTERMs, each to a fresh server but the first
    shutdowns: int = 0
    notes: list[str] = field(default_factory=list)


def target(preset: str) -> str:
    """The signed path and query of a preset's WebP, as a page would hold it."""
    path = f"/v1/{TENANT}/{ASSET}/{preset}.webp"
    version = RENDITIONS[(TENANT, ASSET, preset, "webp")].version
    return signed_url("", path, version=version, key_id=KEY_ID, secret=SECRET)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(port: int, target: str, method: str = "GET", **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, target, headers=headers)
    return connection.getresponse()


@contextmanager
def server(stack: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The stack's server process, answering on `port`, its stderr in `log`; stopped on
    exit if still running."""
    command = [sys.executable, "-m", "bench.http_stacks", "--serve", stack, "--port", str(port)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{stack} did not start on port {port}") from None
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def check_answers(stack: str, port: int) -> None:
    """Every stack must answer each workload alike before it is timed."""
    card_target = target("card")
    card = get(port, card_target)
    body = card.read()
    etag = card.getheader("ETag") or ""
    expected = RENDITIONS[(TENANT, ASSET, "card", "webp")]
    if card.status != 200 or body != expected.body or etag != expected.etag:
        raise RuntimeError(f"{stack}: card answered {card.status}, {len(body)} bytes")
    for name in ("Cache-Control", "Content-Type", "X-Content-Type-Options", "X-Request-Id"):
        if not card.getheader(name):
            raise RuntimeError(f"{stack}: card without {name}")
    zoom = get(port, target("zoom"))
    if zoom.status != 200 or len(zoom.read()) != ZOOM_BYTES:
        raise RuntimeError(f"{stack}: zoom-stream answered {zoom.status}")
    cached = get(port, card_target, **{"If-None-Match": etag})
    if cached.status != 304 or cached.read():
        raise RuntimeError(f"{stack}: If-None-Match answered {cached.status}")
    forged = get(port, card_target[:-4] + "AAAA")
    if forged.status != 403 or json.loads(forged.read())["error"]["status"] != 403:
        raise RuntimeError(f"{stack}: a forged signature answered {forged.status}")


def measure(
    process: subprocess.Popen[bytes], url: str, seconds: float, headers: dict[str, str]
) -> Cell:
    before = sum(tree_cpu_seconds(process.pid))
    result = run_wrk([url], connections=CONNECTIONS, seconds=seconds, threads=1, headers=headers)
    cpu = sum(tree_cpu_seconds(process.pid)) - before
    errors = result.errors + result.non_2xx
    if errors or not result.requests:
        raise RuntimeError(f"wrk counted {errors} errors of {result.requests}: {result}")
    return Cell(
        rps=result.rps,
        mb_s=result.mb_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_us=cpu / result.requests * 1e6,
    )


def children_cpu_seconds() -> float:
    """CPU of this process's finished children: the wrk runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_rss_mib(pid: int) -> float:
    return rss_mib(pid) + sum(rss_mib(child) for child in child_pids(pid))


def exchange(port: int, request: str) -> bytes:
    """Everything a server sends for one raw request until it closes (Connection: close)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request.encode())
        while chunk := client.recv(CHUNK):
            received += chunk
    return received


def probe_head(port: int) -> bool:
    """HEAD: 200, the GET's Content-Length, and no body."""
    answer = exchange(
        port, f"HEAD {target('card')} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").lower().split("\r\n")
    return (
        lines[0].startswith("http/1.1 200")
        and f"content-length: {CARD_BYTES}" in lines
        and not body
    )


def probe_backpressure(process: subprocess.Popen[bytes], port: int) -> float:
    """Server memory growth (MiB) while a client asks for 64 MiB and reads nothing."""
    before = tree_rss_mib(process.pid)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(f"GET {target('huge')} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        time.sleep(2)
        return tree_rss_mib(process.pid) - before


def probe_client_gone(port: int) -> int:
    """Chunks still read after a client of the 64 MiB stream left having read one."""

    def produced() -> int:
        count: int = json.loads(get(port, PRODUCED_PATH).read())["chunks"]
        return count

    # a stream an earlier probe left may still be read: wait until the count stands still
    while (settled := produced()) != produced():
        time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"GET {target('huge')} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        client.recv(CHUNK)
        time.sleep(0.3)  # the socket buffers fill; what is read up to here is not waste
        before = max(produced(), settled)
    time.sleep(1)
    return produced() - before


def probe_shutdown(process: subprocess.Popen[bytes], port: int, probes: Probes) -> None:
    """SIGTERM while 64 MiB are streaming: is the response finished, and when does it exit?"""
    response = get(port, target("huge"))
    response.read(CHUNK)
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:
        probes.shutdown_complete = len(response.read()) == HUGE_BYTES - CHUNK
    except http.client.IncompleteRead as error:
        probes.notes.append(f"cut after {(CHUNK + len(error.partial)) / 2**20:.1f} MiB")
    except OSError as error:
        probes.notes.append(f"cut: {error}")
    try:
        probes.exit_code = process.wait(timeout=70)
        probes.shutdown_s = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        probes.notes.append("still running 70 s after SIGTERM")


def wrk_target(workload: str, port: int) -> tuple[str, dict[str, str]]:
    """The URL and extra headers of one workload's requests."""
    base = f"http://127.0.0.1:{port}"
    if workload == "zoom-stream":
        return base + target("zoom"), {}
    if workload == "304":
        etag = RENDITIONS[(TENANT, ASSET, "card", "webp")].etag
        return base + target("card"), {"If-None-Match": etag}
    return base + target("card"), {}


def bench_stacks(
    stacks: list[str], seconds: float, rounds: int, shutdowns: int, logs: Path
) -> tuple[dict[str, dict[str, Cell]], dict[str, Probes], float]:
    """Every stack's server at once (idle ones cost nothing), each workload's cells taken
    stack after stack, so drift on a shared machine falls on all stacks alike; the best
    of `rounds` rounds per cell. Also returns the cores others used meanwhile (neither the
    servers nor wrk): how busy the machine was."""
    cells: dict[str, dict[str, Cell]] = {stack: {} for stack in stacks}
    probes = {stack: Probes() for stack in stacks}
    ports = {stack: free_port() for stack in stacks}
    with ExitStack() as running:
        processes = {
            stack: running.enter_context(server(stack, ports[stack], logs / f"{stack}.log"))
            for stack in stacks
        }
        for stack in stacks:
            check_answers(stack, ports[stack])
            url, headers = wrk_target("card", ports[stack])
            measure(processes[stack], url, min(seconds, 2), headers)  # warm-up
        started = (time.monotonic(), machine_busy_seconds(), children_cpu_seconds())
        servers_before = sum(sum(tree_cpu_seconds(p.pid)) for p in processes.values())
        for _ in range(rounds):
            for workload in WORKLOADS:
                for stack in stacks:
                    url, headers = wrk_target(workload, ports[stack])
                    cell = measure(processes[stack], url, seconds, headers)
                    best = cells[stack].get(workload)
                    # others' work on a shared machine only ever takes throughput away
                    if best is None or cell.rps > best.rps:
                        cells[stack][workload] = cell
        servers = sum(sum(tree_cpu_seconds(p.pid)) for p in processes.values()) - servers_before
        wall, busy, wrk = (time.monotonic(), machine_busy_seconds(), children_cpu_seconds())
        others = (busy - started[1] - servers - (wrk - started[2])) / (wall - started[0])
        for stack in stacks:
            probes[stack].head_ok = probe_head(ports[stack])
            probes[stack].backpressure_mib = probe_backpressure(processes[stack], ports[stack])
            probes[stack].chunks_after_client_left = probe_client_gone(ports[stack])
            probe_shutdown(processes[stack], ports[stack], probes[stack])
    for stack in stacks:
        probes[stack].crashes = crashes(logs / f"{stack}.log")
        probes[stack].clean_shutdowns = int(clean_shutdown(probes[stack]))
        probes[stack].clean_shutdowns += sum(
            shutdown_again(stack, logs / f"{stack}-{i}.log") for i in range(shutdowns - 1)
        )
        probes[stack].shutdowns = shutdowns
    return cells, probes, others


def crashes(log: Path) -> int:
    text = log.read_text(errors="replace")
    return text.count("Traceback") + text.count("panicked")


def clean_shutdown(probe: Probes) -> bool:
    return probe.shutdown_complete and probe.exit_code == 0 and not probe.crashes


def shutdown_again(stack: str, log: Path) -> bool:
    """A fresh server, one client that leaves a stream (as browsers do), another stream in
    flight, SIGTERM: finished, exit 0, nothing crashed?"""
    port = free_port()
    probe = Probes()
    with server(stack, port, log) as process:
        probe_client_gone(port)
        probe_shutdown(process, port, probe)
    probe.crashes = crashes(log)
    return clean_shutdown(probe)


def sound(probe: Probes) -> bool:
    """What delivery needs at the edges, whatever the speed: HEAD right, memory bounded
    by a slow client, the source left alone once the client has gone, in-flight streams
    finished on SIGTERM and a clean exit (the lifecycle tests assert exit status 0), and
    nothing crashed on the way."""
    return (
        probe.head_ok
        and probe.backpressure_mib < 16
        and probe.chunks_after_client_left < 16
        and not probe.crashes
        and probe.clean_shutdowns == probe.shutdowns
    )


def choose(cells: dict[str, dict[str, Cell]], probes: dict[str, Probes]) -> str:
    """aiohttp, unless a stack that is as sound at the edges serves the card decisively
    faster (then the fastest such stack)."""
    base = cells[BASELINE]["card"].rps
    faster = [
        stack
        for stack in cells
        if sound(probes[stack]) and cells[stack]["card"].rps > DECISIVE_RATIO * base
    ]
    return max(faster, key=lambda stack: cells[stack]["card"].rps, default=BASELINE)


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def report(
    cells: dict[str, dict[str, Cell]], probes: dict[str, Probes], timing: str, others: float
) -> None:
    console = Console(width=150)
    table = Table(
        title=f"Delivery workloads, one server process each, wrk -t1 -c{CONNECTIONS} "
        f"{timing} ({os.cpu_count()} cores; other processes used {max(others, 0):.2f} of them "
        "meanwhile)"
    )
    for column in ("stack", "workload", "req/s", "MB/s", "p50 ms", "p99 ms",
                   "server CPU µs/req", "server cores", "req/s vs aiohttp"):  # fmt: skip
        table.add_column(column, justify="right")
    for stack, by_workload in cells.items():
        for workload, cell in by_workload.items():
            ratio = cell.rps / cells[BASELINE][workload].rps if BASELINE in cells else 0.0
            table.add_row(
                stack, workload, f"{cell.rps:,.0f}", f"{cell.mb_s:,.1f}", f"{cell.p50_ms:.2f}",
                f"{cell.p99_ms:.2f}", f"{cell.cpu_us:.0f}", f"{cell.rps * cell.cpu_us / 1e6:.2f}",
                f"{ratio:.2f}x",
            )  # fmt: skip
    console.print(table)
    edges = Table(
        title=f"What throughput does not show (a {HUGE_BYTES >> 20} MiB stream but HEAD; "
        "sound: every column as delivery needs it)"
    )
    for column in ("stack", "HEAD: headers, no body", "RSS growth, client not reading",
                   f"chunks read after the client left (of {HUGE_BYTES // CHUNK})",
                   "stream in flight at SIGTERM", "SIGTERM to exit",
                   "tracebacks, panics", "clean SIGTERMs", "sound"):  # fmt: skip
        edges.add_column(column, justify="right")
    for stack, probe in probes.items():
        edges.add_row(
            stack,
            "yes" if probe.head_ok else "no",
            f"{probe.backpressure_mib:.1f} MiB",
            str(probe.chunks_after_client_left),
            "completed" if probe.shutdown_complete else "; ".join(probe.notes) or "cut",
            f"{probe.shutdown_s:.2f} s, {exit_text(probe.exit_code)}",
            str(probe.crashes),
            f"{probe.clean_shutdowns} of {probe.shutdowns}",
            "yes" if sound(probe) else "no",
        )
    console.print(edges)
    used = sorted({p for stack in probes for p in PACKAGES[stack]})
    console.print("versions: " + ", ".join(f"{p} {package_version(p)}" for p in used))


def main(seconds: float, rounds: int, shutdowns: int, stacks: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="imagepipe-bench-") as work:
        cells, probes, others = bench_stacks(stacks, seconds, rounds, shutdowns, Path(work))
    report(cells, probes, f"{seconds:g} s per cell, best of {rounds}", others)
    summary: dict[str, float | int | str] = {}
    for stack in stacks:
        key = stack.replace("-", "_")
        summary[f"{key}_card_rps"] = cells[stack]["card"].rps
    for stack in stacks:
        key = stack.replace("-", "_")
        summary[f"{key}_zoom_mb_s"] = cells[stack]["zoom-stream"].mb_s
    if BASELINE in cells:
        summary["choice"] = choose(cells, probes)
    print_summary(summary)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get(SECONDS_ENV, "10")),
        help=f"wrk's duration per cell (default 10, or ${SECONDS_ENV})",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each cell's best counts")
    parser.add_argument(
        "--shutdowns", type=int, default=6, help="SIGTERMs with a stream in flight, per stack"
    )
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset")
    parser.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port)
    else:
        main(arguments.seconds, arguments.rounds, arguments.shutdowns, arguments.stacks.split(","))
