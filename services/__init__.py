"""imagepipe services: ingest, catalog, renderer, quality, and their shared runtime."""
