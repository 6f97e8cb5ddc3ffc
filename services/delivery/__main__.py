"""`python -m services.delivery`: serve renditions over HTTP until SIGTERM.

With IMAGEPIPE_DELIVERY_PROCESSES above 1 this process supervises that many workers on
the same port (workers.py); each worker, and a single process, serves here.
"""

from services.delivery.http import serve
from services.delivery.wiring import build
from services.delivery.workers import become_worker, is_worker, supervise
from services.shared.entrypoint import run_main
from services.shared.settings import Settings


async def main(settings: Settings) -> None:
    worker = is_worker()
    if settings.delivery_processes > 1 and not worker:
        await supervise(settings, settings.delivery_processes)
        return
    if worker:
        become_worker()
    async with build(settings) as delivery:
        await serve(delivery.core, delivery.readiness, settings, shared_port=worker)


if __name__ == "__main__":
    run_main("delivery", main)
