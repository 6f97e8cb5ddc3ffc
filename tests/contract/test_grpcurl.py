"""What a person sees with grpcurl on each port: the service, health, reflection, comments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import Stack

GRPCURL = Path(sys.executable).parent / "grpcurl"
EXPECTED = {
    "ingest": "imagepipe.v1.IngestService",
    "catalog": "imagepipe.v1.CatalogService",
    "renderer": "imagepipe.v1.RendererService",
    "quality": "imagepipe.v1.QualityService",
}


def _grpcurl(*args: str) -> str:
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_list_health_and_describe_on_every_port(service: str, stack: Stack) -> None:
    address = stack.address(service)
    listed = _grpcurl(address, "list").split()
    assert {
        EXPECTED[service],
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(listed)

    health = json.loads(_grpcurl(address, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}

    described = _grpcurl(address, "describe", EXPECTED[service])
    first_comment = described.splitlines()[1]
    assert first_comment.startswith("// "), described
