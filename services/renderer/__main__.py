"""`python -m services.renderer`: serve RendererService and render until SIGTERM."""

from services.renderer.wiring import build
from services.shared.entrypoint import run_service

if __name__ == "__main__":
    run_service("renderer", build)
