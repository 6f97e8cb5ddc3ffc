"""`python -m services.quality`: serve QualityService until SIGTERM."""

from services.quality.wiring import build
from services.shared.entrypoint import run_service

if __name__ == "__main__":
    run_service("quality", build)
