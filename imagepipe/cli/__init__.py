"""The `imagepipe` command line, built only on :mod:`imagepipe.client`.

Keys and addresses come from the environment (IMAGEPIPE_API_KEY, IMAGEPIPE_ADMIN_KEY,
IMAGEPIPE_{INGEST,CATALOG,RENDERER,QUALITY}_ADDR, and for delivery URLs
IMAGEPIPE_DELIVERY_URL, IMAGEPIPE_SIGNING_KEY_ID, IMAGEPIPE_SIGNING_SECRET), so secrets
never show up in shell history or process lists. Every command prints aligned tables
by default and, with ``--json``, exactly one JSON object per line on stdout for
scripts. Progress and human-readable errors go to stderr. The exit status is 0 only
when everything succeeded.

``app`` registers the commands (``commands/``, by topic); ``output`` shows what they
got and ``shapes`` holds the JSON objects; ``batch`` runs an upload batch; ``running``
gives each command a client and turns errors into the exit status.
"""

from imagepipe.cli.app import app, main

__all__ = ["app", "main"]
