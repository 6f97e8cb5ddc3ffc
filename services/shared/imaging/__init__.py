"""Pure image functions shared by ingest, renderer and quality (no I/O, no servers)."""
