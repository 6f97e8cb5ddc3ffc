"""The one gRPC server bootstrap every service runs.

``serve(spec, settings)`` starts a grpc.aio server with
- the call interceptor: request id, authentication against the access level the
  proto declares, domain errors mapped to status + ErrorInfo, Prometheus metrics;
- grpc.health.v1, SERVING only while every dependency check passes;
- server reflection, so grpcurl can list and describe every service;
- background workers (relay, consumers) started after the server and stopped first;
- graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.shared import metrics
from services.shared.auth import (
    Access,
    Principal,
    TenantAuthenticator,
    access_policies,
    authorize,
    current_principal,
)
from services.shared.deadlines import reset_deadline, set_deadline
from services.shared.errors import ImagepipeError, Unimplemented, to_grpc_status
from services.shared.logs import get_logger, new_request_id, request_id_var
from services.shared.reflection import add_reflection
from services.shared.settings import Settings
from services.shared.wire import RefusedRequest, checked_deserializer

__all__ = ["Check", "GrpcService", "ServiceSpec", "Worker", "serve"]

log = get_logger(__name__)

Check = Callable[[], Awaitable[None]]
"""A dependency probe: returns when the dependency answers, raises otherwise."""

REQUEST_ID_KEY = "x-request-id"
# Only the type stubs make these generic; at run time they are plain classes.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


@dataclass(frozen=True)
class GrpcService:
    descriptor: ServiceDescriptor
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class Worker(Protocol):
    """A background loop owned by a service (outbox relay, queue consumer)."""

    async def run(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


@dataclass
class ServiceSpec:
    name: str
    port: int
    metrics_port: int
    services: Sequence[GrpcService]
    authenticator: TenantAuthenticator
    checks: Mapping[str, Check] = field(default_factory=dict)
    workers: Sequence[Worker] = ()


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every imagepipe RPC; health and reflection pass through untouched."""

    def __init__(
        self,
        policies: Mapping[str, Access],
        authenticator: TenantAuthenticator,
        settings: Settings,
    ) -> None:
        self._policies = policies
        self._authenticator = authenticator
        self._admin_key = settings.admin_key.get_secret_value()
        self._internal_token = settings.internal_token.get_secret_value()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        access = self._policies.get(details.method)
        if access is None:
            # Health and reflection: no credentials, but malformed requests are
            # refused the same way as on every imagepipe RPC.
            return _wrap_handler(handler, details.method, _plain_scope)
        return _wrap_handler(handler, details.method, functools.partial(self._scope, access))

    @contextlib.asynccontextmanager
    async def _scope(
        self, access: Access, method: str, rpc_type: str, context: Context
    ) -> AsyncIterator[None]:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        request_id = metadata.get(REQUEST_ID_KEY) or new_request_id()
        rid_token = request_id_var.set(request_id)
        deadline_token = set_deadline(context.time_remaining())
        principal_token = current_principal.set(None)
        _, service_name, method_name = method.split("/")
        labels = (rpc_type, service_name, method_name)
        metrics.GRPC_STARTED.labels(*labels).inc()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            principal: Principal = await authorize(
                access,
                metadata,
                tenants=self._authenticator,
                admin_key=self._admin_key,
                internal_token=self._internal_token,
            )
            current_principal.set(principal)
            yield
        except ImagepipeError as error:
            code = error.code
            await _abort(context, error, request_id)
        except NotImplementedError:
            code = grpc.StatusCode.UNIMPLEMENTED
            missing = Unimplemented(f"{method_name} is not implemented by this server yet")
            await _abort(context, missing, request_id)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", method)
            bug = ImagepipeError(f"internal error; quote request id {request_id} when reporting")
            await _abort(context, bug, request_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics.GRPC_HANDLED.labels(*labels, code.name).inc()
            metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(elapsed)
            # One access line per call: with the request id, an upload's path through
            # every service can be followed in the logs.
            log.info(
                "rpc %s %s",
                method_name,
                code.name,
                extra={
                    "method": method,
                    "code": code.name,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            current_principal.reset(principal_token)
            reset_deadline(deadline_token)
            request_id_var.reset(rid_token)


async def _abort(context: Context, error: ImagepipeError, request_id: str) -> None:
    status = to_grpc_status(error, request_id)
    if error.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        log.warning("%s: %s", error.code.name, error.message, extra={"reason": error.reason})
    await context.abort(status.code, status.details, status.trailing_metadata)


@contextlib.asynccontextmanager
async def _plain_scope(method: str, rpc_type: str, context: Context) -> AsyncIterator[None]:
    """Request id and domain errors to status, for the RPCs that are not imagepipe's own."""
    metadata = dict(context.invocation_metadata() or ())
    request_id = str(metadata.get(REQUEST_ID_KEY) or new_request_id())
    token = request_id_var.set(request_id)
    try:
        yield
    except ImagepipeError as error:
        await _abort(context, error, request_id)
    finally:
        request_id_var.reset(token)


Scope = Callable[[str, str, Context], contextlib.AbstractAsyncContextManager[None]]


def _accepted(request: Any, method: str) -> Any:
    """The request itself, or the error of one the deserializer refused."""
    if isinstance(request, RefusedRequest):
        log.warning(
            "refused request to %s: %s",
            method,
            request.error.message,
            extra={"reason": request.error.reason},
        )
        raise request.error
    return request


async def _accepted_stream(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    async for request in requests:
        yield _accepted(request, method)


# The four kinds of handler: its attribute, the rpc type metrics name it by, whether
# requests and responses are streamed, and the factory of a handler of that kind.
_KINDS = (
    ("unary_unary", "unary", False, False, grpc.unary_unary_rpc_method_handler),
    ("stream_unary", "client_stream", True, False, grpc.stream_unary_rpc_method_handler),
    ("unary_stream", "server_stream", False, True, grpc.unary_stream_rpc_method_handler),
    ("stream_stream", "bidi_stream", True, True, grpc.stream_stream_rpc_method_handler),
)


def _wrap_handler(handler: Handler, method: str, scope: Scope) -> Handler:
    """Return a handler of the same kind whose behaviour runs inside `scope`, and
    whose requests are checked before the behaviour sees them (see wire.py)."""
    deserializer = handler.request_deserializer
    owner = getattr(deserializer, "__self__", None)
    type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", method)
    serde = {
        "request_deserializer": checked_deserializer(deserializer, type_name),
        "response_serializer": handler.response_serializer,
    }
    # The behaviours are coroutine functions or async generators on an aio server.
    attribute, rpc_type, streamed_in, streamed_out, factory = next(
        (kind for kind in _KINDS if getattr(handler, kind[0])), _KINDS[-1]
    )
    behaviour: Any = getattr(handler, attribute)
    accept = _accepted_stream if streamed_in else _accepted

    # Streamed responses are written from a coroutine, not yielded from a generator:
    # grpc.aio leaves a handler's generator suspended when the call is cancelled while
    # it sends, and the generator is then closed at garbage collection, in another task
    # and context, where `scope` cannot reset its context variables ("Task exception
    # was never retrieved ... created in a different Context"). Here the servicer's
    # generator is closed inside the call's own task, however the call ends.
    async def behave(request: Any, context: Context) -> Any:
        async with scope(method, rpc_type, context):
            produced = behaviour(accept(request, method), context)
            if streamed_out:
                await _write_all(produced, context)
                return None
            return await produced

    return factory(behave, **serde)


async def _write_all(produced: Any, context: Context) -> None:
    """Write what a streaming behaviour yields, closing its generator in this task.

    A behaviour that writes with `context.write` itself and returns (grpc's own
    health Watch does) is simply awaited.
    """
    if inspect.isawaitable(produced):
        await produced
        return
    responses: AsyncGenerator[Any, None] = produced
    try:
        async for response in responses:
            await context.write(response)
    finally:
        await responses.aclose()


class HealthMonitor:
    """Keeps grpc.health.v1 in step with the service's dependencies."""

    def __init__(
        self, servicer: health.aio.HealthServicer, names: Sequence[str], checks: Mapping[str, Check]
    ) -> None:
        self._servicer = servicer
        self._names = ["", *names]
        self._checks = checks
        self._failing: dict[str, str] = {}
        self._serving: bool | None = None

    async def probe(self, timeout: float) -> bool:
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), timeout) for check in self._checks.values()),
            return_exceptions=True,
        )
        failing = {
            name: f"{type(result).__name__}: {result}"
            for name, result in zip(self._checks, results, strict=True)
            if isinstance(result, BaseException)
        }
        serving = not failing
        if serving != self._serving or failing.keys() != self._failing.keys():
            if serving:
                log.info("dependencies reachable; SERVING")
            else:
                log.warning("dependency down; NOT_SERVING", extra={"failing": failing})
        self._failing, self._serving = failing, serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self._servicer.set(name, status)
        return serving

    async def run(self, interval: float) -> None:
        while True:
            await self.probe(timeout=max(interval, 1.0))
            await asyncio.sleep(interval)


# HTTP/2 flow control: gRPC's BDP probing grows each stream's receive window to many
# MiB, which a client streaming a 50 MiB upload fills: ~25 MiB of RSS per concurrent
# upload. A fixed 1 MiB window (one chunk in flight beyond the one being handled)
# keeps memory per upload near 8 MiB and still allows ~20 MB/s per stream at 50 ms RTT.
STREAM_WINDOW_BYTES = 1024 * 1024
SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
)


async def serve(
    spec: ServiceSpec, settings: Settings, *, stop: asyncio.Event | None = None
) -> None:
    """Run the service until SIGTERM/SIGINT (or `stop`), then shut down gracefully."""
    stop = stop or asyncio.Event()
    names = [s.descriptor.full_name for s in spec.services]
    policies = access_policies(s.descriptor for s in spec.services)
    server = grpc.aio.server(
        interceptors=[CallInterceptor(policies, spec.authenticator, settings)],
        options=[*SERVER_OPTIONS],
    )
    for service in spec.services:
        service.add_to_server(service.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    add_reflection(server, [*names, health.SERVICE_NAME])
    monitor = HealthMonitor(health_servicer, names, spec.checks)
    await monitor.probe(timeout=settings.health_interval_seconds)

    address = f"{settings.bind_host}:{spec.port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot listen on {address}")
    metrics.serve_metrics(settings.bind_host, spec.metrics_port)
    await server.start()
    log.info(
        "%s listening",
        spec.name,
        extra={"address": address, "metrics_port": spec.metrics_port, "services": names},
    )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(monitor.run(settings.health_interval_seconds))]
    tasks += [asyncio.create_task(worker.run()) for worker in spec.workers]
    tasks.append(asyncio.create_task(metrics.watch_event_loop_lag()))
    stopped = asyncio.create_task(stop.wait())
    try:
        # A worker that dies takes the service down rather than leaving it half alive.
        done, _ = await asyncio.wait([stopped, *tasks[1:]], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                log.error("background worker failed", exc_info=task.exception())
    finally:
        log.info("%s shutting down", spec.name)
        await health_servicer.enter_graceful_shutdown()
        grace = settings.shutdown_grace_seconds
        await asyncio.gather(*(w.stop(grace) for w in spec.workers), return_exceptions=True)
        await server.stop(grace)
        for task in [*tasks, stopped]:
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
