"""`python -m services.<name>`: settings, logging, then the service until SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit

from pydantic import ValidationError

from services.shared.logs import configure_logging, get_logger
from services.shared.server import ServiceSpec, serve
from services.shared.settings import Settings, load_settings

__all__ = ["run_main", "run_service", "secret_values"]

Builder = Callable[[Settings], AbstractAsyncContextManager[ServiceSpec]]


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, for the log redactor."""
    values = [
        settings.admin_key.get_secret_value(),
        settings.internal_token.get_secret_value(),
        settings.key_pepper.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
    ]
    for url in (settings.database_url, settings.amqp_url):
        password = urlsplit(url.get_secret_value()).password
        if password:
            values.append(password)
    return values


# Client libraries finish closing in tasks of their own (aio-pika runs a channel's
# close callbacks in one): the loop must not end under them.
CLOSE_CALLBACKS_SECONDS = 2.0


async def _drain_background_tasks(timeout: float) -> None:
    """Let tasks still running after shutdown finish; cancel what outlasts `timeout`.

    Holding them here also keeps them referenced: a pending task that is only weakly
    held is destroyed with "Task was destroyed but it is pending!" at exit.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return
        # Finishing tasks may start others (a close callback): look again after each.
        await asyncio.wait(pending, timeout=remaining)


def run_main(name: str, main: Callable[[Settings], Awaitable[None]]) -> None:
    """Settings, logging and the internal credential checked, then `main` until it returns.

    Every service starts this way: the gRPC ones through run_service, delivery (HTTP)
    with a main of its own.
    """
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"{name}: invalid configuration:\n{error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.log_level, secret_values(settings))
    if not settings.internal_token.get_secret_value():
        get_logger(name).error("IMAGEPIPE_INTERNAL_TOKEN is required (the same on every service)")
        raise SystemExit(2)

    async def run() -> None:
        await main(settings)
        await _drain_background_tasks(CLOSE_CALLBACKS_SECONDS)
        # The last line, once adapters are closed and their callbacks have run: a client
        # library logging on its way out (aio-pika closing a channel) comes before it.
        get_logger(name).info("%s stopped", name)

    asyncio.run(run())


def run_service(name: str, build: Builder) -> None:
    """A gRPC service: the spec `build` yields, served until SIGTERM."""

    async def main(settings: Settings) -> None:
        async with build(settings) as spec:
            await serve(spec, settings)

    run_main(name, main)
