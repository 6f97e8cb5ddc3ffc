"""`python -m services.ingest`: serve IngestService until SIGTERM."""

from services.ingest.wiring import build
from services.shared.entrypoint import run_service

if __name__ == "__main__":
    run_service("ingest", build)
