"""Streamed responses through the call interceptor: a cancelled call is cleaned up in
its own task.

grpc.aio leaves a handler's async generator suspended when the call is cancelled while
a message is being sent; the generator was then closed at garbage collection, in
another task and context, where resetting the principal's context variable failed
("Task exception was never retrieved ... created in a different Context").
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc
from pydantic import SecretStr

from services.shared.auth import Access, Principal, current_principal
from services.shared.server import CallInterceptor
from services.shared.settings import Settings

METHOD = "/imagepipe.v1.CatalogService/WatchAsset"
ADMIN = "admin-key-for-unit-tests"


class Tenants:
    async def authenticate(self, api_key: str) -> Principal:
        raise AssertionError("only the admin key is used here")


class Details:
    method = METHOD
    invocation_metadata = (("authorization", f"Bearer {ADMIN}"),)


class StalledContext:
    """A call whose client stopped reading: a send never completes until cancelled."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return Details.invocation_metadata

    async def write(self, message: object) -> None:
        self.sending.set()
        await asyncio.Event().wait()

    def code(self) -> grpc.StatusCode | None:
        return None

    def time_remaining(self) -> float | None:
        return None


async def _dispatch(handler: Any, context: StalledContext) -> None:
    """What grpc.aio does with a unary-stream handler (its
    `_finish_handler_with_stream_responses`): await a coroutine handler, or send each
    message an async generator handler yields."""
    behaviour = handler.unary_stream
    if inspect.iscoroutinefunction(behaviour):
        await behaviour(object(), context)
    else:
        async for message in behaviour(object(), context):
            await context.write(message)


async def test_a_call_cancelled_while_sending_closes_its_stream_in_its_own_task() -> None:
    closed_in: list[asyncio.Task[Any] | None] = []

    async def watch(request: object, context: object) -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.Event().wait()
        finally:
            closed_in.append(asyncio.current_task())

    interceptor = CallInterceptor(
        {METHOD: Access.ADMIN},
        Tenants(),
        Settings(admin_key=SecretStr(ADMIN), internal_token=SecretStr("internal-unit")),
    )

    async def continuation(details: object) -> Any:
        return grpc.unary_stream_rpc_method_handler(watch)

    handler = await interceptor.intercept_service(continuation, Details())  # type: ignore[arg-type]
    unhandled: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, error: unhandled.append(error))
    try:
        context = StalledContext()
        call = asyncio.create_task(_dispatch(handler, context))
        await asyncio.wait_for(context.sending.wait(), 10)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

        # Closed by the call itself, before it ended: not left for garbage collection.
        assert closed_in == [call]
        assert current_principal.get() is None
        del call
        gc.collect()
        await asyncio.sleep(0)
        gc.collect()
        assert unhandled == []
    finally:
        loop.set_exception_handler(None)
