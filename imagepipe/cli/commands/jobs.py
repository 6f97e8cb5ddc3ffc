"""Job commands: ``poison list`` and ``poison retry`` for jobs given up on."""

from __future__ import annotations

from typing import Annotated

import typer

from imagepipe.cli.output import View, draw_poison_jobs, out
from imagepipe.cli.running import JsonOption, each_id, run, run_view
from imagepipe.cli.shapes import poison_json, retried_json
from imagepipe.client import AsyncClient
from imagepipe.v1 import catalog_pb2

__all__ = ["poison_list", "poison_retry"]


def poison_list(
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Also list poison jobs already replayed.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs given up on, newest first."""

    async def view(client: AsyncClient) -> View:
        rows = [
            poison_json(p) async for p in client.list_poison_jobs(include_replayed=include_replayed)
        ]
        return View(rows, lambda: draw_poison_jobs(rows))

    run_view(view, as_json=as_json)


def poison_retry(
    poison_job_ids: Annotated[list[str], typer.Argument(help="Poison job ids to replay.")],
    as_json: JsonOption = False,
) -> None:
    """Replay poison jobs: their renders are queued again with a fresh retry budget."""

    def retried(poison_job_id: str, replayed: catalog_pb2.RetryPoisonJobResponse) -> View:
        row = retried_json(poison_job_id, replayed)
        line = f"replayed {poison_job_id}: job {row['job_id']} is {row['state']}"
        return View([row], lambda: out.print(line))

    async def command(client: AsyncClient) -> int:
        return await each_id(
            poison_job_ids,
            client.retry_poison_job,
            retried,
            as_json=as_json,
            id_field="poison_job_id",
        )

    run(command, as_json=as_json)
