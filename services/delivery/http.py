"""The aiohttp adapter: the only module that knows the HTTP framework.

One catch-all route hands every request to DeliveryCore and sends its Reply; a
middleware gives each request its id (X-Request-Id, echoed) and records it (metrics,
one JSON access-log line). Streamed bodies are copied piece by piece with aiohttp's
back-pressure (a write waits while the client's socket buffer is full), and closed
however the copy ends, which releases the object store's connection.

`serve` runs it until SIGTERM: readiness turns false, the listener closes, requests in
flight get shutdown_grace_seconds to finish, then the caller closes the adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.delivery.core import DeliveryCore, route_of
from services.delivery.observe import record_request, request_id_from
from services.delivery.readiness import DependencyReadiness
from services.delivery.reply import ObjectStream, Request, Route
from services.shared import metrics
from services.shared.logs import get_logger, request_id_var
from services.shared.settings import Settings

__all__ = ["make_app", "serve"]

log = get_logger(__name__)

NAME = "delivery"
# Per request, for the middleware: the route the core named, the body bytes sent.
ROUTE: web.RequestKey[Route] = web.RequestKey("route")
BODY_BYTES = web.RequestKey("body_bytes", int)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Status recorded for a request whose client went away before its reply was made.
CLIENT_CLOSED = 499


@web.middleware
async def observe(request: web.Request, handler: _Handler) -> web.StreamResponse:
    started = time.perf_counter()
    token = request_id_var.set(request_id_from(request.headers.get("X-Request-Id")))
    status = CLIENT_CLOSED
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        record_request(
            method=request.method,
            path=request.rel_url.raw_path,
            query=request.query,
            status=status,
            route=request.get(ROUTE) or route_of(request.rel_url.raw_path),
            body_bytes=request.get(BODY_BYTES, 0),
            seconds=time.perf_counter() - started,
        )
        request_id_var.reset(token)


def _handler(core: DeliveryCore) -> _Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        reply = await core.handle(
            Request(request.method, request.rel_url.raw_path, request.query, request.headers)
        )
        request[ROUTE] = reply.route
        reply.headers["X-Request-Id"] = request_id_var.get()
        body = reply.body
        if isinstance(body, bytes) and body:
            # Headers and body leave in one write.
            request[BODY_BYTES] = len(body)
            return web.Response(status=reply.status, headers=reply.headers, body=body)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        sent = 0
        try:
            await response.prepare(request)
            if isinstance(body, ObjectStream):
                async for chunk in body:
                    await response.write(chunk)
                    sent += len(chunk)
            await response.write_eof()
        except ConnectionResetError:
            log.info("client went away mid-reply", extra={"bytes": sent})
        finally:
            request[BODY_BYTES] = sent
            if isinstance(body, ObjectStream):
                await body.aclose()
        return response

    return handle


def make_app(core: DeliveryCore) -> web.Application:
    app = web.Application(middlewares=[observe])
    app.router.add_route("*", "/{path:.*}", _handler(core))
    return app


async def serve(
    core: DeliveryCore,
    readiness: DependencyReadiness,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    shared_port: bool = False,
) -> None:
    """Serve HTTP until SIGTERM/SIGINT (or `stop`), then shut down gracefully.

    `shared_port`: one of several workers (workers.py): the port is bound with
    SO_REUSEPORT and the supervisor serves the metrics."""
    stop = stop or asyncio.Event()
    runner = web.AppRunner(
        make_app(core), access_log=None, shutdown_timeout=settings.shutdown_grace_seconds
    )
    await runner.setup()
    await readiness.probe(timeout=settings.health_interval_seconds)
    site = web.TCPSite(
        runner, settings.bind_host, settings.delivery_port, reuse_port=shared_port or None
    )
    await site.start()
    if not shared_port:
        metrics.serve_metrics(settings.bind_host, settings.delivery_metrics_port)
    log.info(
        "%s listening",
        NAME,
        extra={
            "address": f"{settings.bind_host}:{settings.delivery_port}",
            "metrics_port": settings.delivery_metrics_port,
        },
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(readiness.run(settings.health_interval_seconds)),
        asyncio.create_task(metrics.watch_event_loop_lag()),
    ]
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                log.error("background task failed", exc_info=task.exception())
    finally:
        log.info("%s shutting down", NAME)
        readiness.drain()
        # Closes the listener, then waits for the requests in flight (up to the grace).
        await runner.cleanup()
        for task in [*tasks, stopped]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, stopped, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
