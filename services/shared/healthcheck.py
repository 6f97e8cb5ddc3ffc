"""`python -m services.shared.healthcheck SERVICE`: exit 0 only if the service is SERVING.

A container healthcheck for images without `grpc_health_probe`: it calls
grpc.health.v1 Health/Check on the local service and exits 0 for SERVING, 1 for
anything else (NOT_SERVING, unreachable, deadline exceeded).

    python -m services.shared.healthcheck catalog        # port from IMAGEPIPE_CATALOG_PORT
    python -m services.shared.healthcheck --port 50052   # an explicit port
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.shared.settings import load_settings

__all__ = ["SERVICES", "check", "main", "resolve_target"]

SERVICES = ("ingest", "catalog", "renderer", "quality")
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def check(target: str, *, service: str = "", timeout: float = 3.0) -> str:
    """The serving status name reported by `target` (host:port), or why there is none."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            return code.name if code is not None else type(error).__name__
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def resolve_target(service: str | None, port: int | None, host: str | None) -> str:
    """host:port to call; what is not given comes from the IMAGEPIPE_* settings."""
    if port is None or host is None:
        settings = load_settings()
        if port is None:
            if service is None:
                raise SystemExit("healthcheck: name a service or pass --port")
            port = int(getattr(settings, f"{service}_port"))
        if host is None:
            # A service listening on every interface is reached through loopback.
            host = "127.0.0.1" if settings.bind_host in _WILDCARDS else settings.bind_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.shared.healthcheck",
        description="Exit 0 if the local imagepipe service reports SERVING on grpc.health.v1.",
    )
    parser.add_argument("service", nargs="?", choices=SERVICES, help="take the port from settings")
    parser.add_argument("--port", type=int, help="gRPC port (overrides the service's setting)")
    parser.add_argument("--host", help="host to call (default: loopback, or IMAGEPIPE_BIND_HOST)")
    parser.add_argument("--timeout", type=float, default=3.0, help="deadline in seconds")
    parser.add_argument(
        "--grpc-service", default="", help="health service name to ask about (default: overall)"
    )
    args = parser.parse_args(argv)
    target = resolve_target(args.service, args.port, args.host)
    status = check(target, service=args.grpc_service, timeout=args.timeout)
    if status == "SERVING":
        return 0
    print(f"healthcheck: {target} is {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
