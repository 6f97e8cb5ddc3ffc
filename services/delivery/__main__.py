"""`python -m services.delivery`: serve renditions over HTTP until SIGTERM."""

from services.delivery.http import serve
from services.delivery.wiring import build
from services.shared.entrypoint import run_main
from services.shared.settings import Settings


async def main(settings: Settings) -> None:
    async with build(settings) as delivery:
        await serve(delivery.core, delivery.readiness, settings)


if __name__ == "__main__":
    run_main("delivery", main)
