"""The contract and client wheels, as another service installs them, against the real stack.

The wheels are built as `make dist` builds them, installed into a fresh virtualenv that
holds nothing else (not even pip), and used from there alone: the client imports, none of
the services' dependencies came along, and an image uploaded through it is read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import Stack
from tests.helpers import Tenant

# Building the wheels and installing them comes on top of starting the stack.
pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
PHOTO = "photo_moto_g9_empty_gps.jpg"
# What made `pip install` of the repository pull hundreds of megabytes into a caller.
SERVER_ONLY = ("asyncpg", "aio-pika", "pyvips", "numpy", "pillow")
THUMB_BOX = 100

# Runs in the wheels' virtualenv: upload, wait for the renditions, read the asset and
# the thumb back, print what came back as JSON.
USE_THE_CLIENT = """
import asyncio, json, sys
from imagepipe.client import AsyncClient, status_name

async def main(path):
    async with AsyncClient.from_env() as client:
        uploaded = await client.upload(path)
        await client.wait_ready(uploaded.asset_id, timeout=90)
        asset = await client.get_asset(uploaded.asset_id)
        thumb = await client.read_rendition_content(uploaded.asset_id, "thumb")
    print(json.dumps({
        "uploaded": uploaded.asset_id,
        "asset_id": asset.asset_id,
        "status": status_name(asset.status),
        "content_hash": asset.content_hash,
        "thumb": {
            "width": thumb.rendition.width,
            "height": thumb.rendition.height,
            "size_bytes": thumb.rendition.size_bytes,
            "head": thumb.data[:3].hex(),
            "length": len(thumb.data),
        },
    }))

asyncio.run(main(sys.argv[1]))
"""

LIST_DISTRIBUTIONS = """
import importlib.metadata, json
print(json.dumps({d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}))
"""

WHERE_FROM = """
import imagepipe.client, imagepipe.v1
print(imagepipe.client.__file__)
print(imagepipe.v1.__file__)
"""


@dataclass(frozen=True)
class Wheels:
    contract: Path
    client: Path


@dataclass(frozen=True)
class ClientVenv:
    root: Path
    python: Path
    # Taken right after the wheels went in, before any test adds to the venv.
    size_bytes: int
    distributions: dict[str, str]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(pyproject: Path) -> set[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {_normalized(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]) for spec in dependencies}


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _pip_install(python: Path, *requirements: str | Path) -> None:
    """This interpreter's pip installs into `python`'s environment, which has no pip."""
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    _run([*pip, "-c", REPO / "constraints.txt", *requirements], cwd=python.parents[2])


def _tree_size(root: Path) -> int:
    return sum(
        (Path(folder) / name).lstat().st_size
        for folder, _, files in os.walk(root)
        for name in files
    )


def _isolated_env(stack: Stack | None = None, tenant: Tenant | None = None) -> dict[str, str]:
    """The caller's environment without anything that points Python at this repository."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMAGEPIPE_", "PYTHON", "VIRTUAL_ENV"))
    }
    if stack is not None and tenant is not None:
        env["IMAGEPIPE_API_KEY"] = tenant.key
        for service in ("ingest", "catalog", "renderer", "quality"):
            env[f"IMAGEPIPE_{service.upper()}_ADDR"] = stack.address(service)
    return env


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """Both wheels, built with `make dist`'s command (no build isolation: no network)."""
    out = tmp_path_factory.mktemp("dist")
    build = ["pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir"]
    _run([sys.executable, "-m", *build, out, "packages/contract", "packages/client"], cwd=REPO)
    (contract,) = out.glob("imagepipe_contract-*.whl")
    (client,) = out.glob("imagepipe_client-*.whl")
    for wheel in (contract, client):
        print(f"\n{wheel.name}: {wheel.stat().st_size / 1024:.1f} KiB")
    return Wheels(contract, client)


@pytest.fixture(scope="module")
def client_venv(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    """A new virtualenv without pip; this interpreter's pip installs the two wheels into it,
    with their dependencies from the configured index (versions as constraints.txt pins)."""
    root = tmp_path_factory.mktemp("client-venv") / "venv"
    work = root.parent
    _run([sys.executable, "-m", "venv", "--without-pip", root], cwd=work)
    python = root / "bin" / "python"
    _pip_install(python, wheels.contract, wheels.client)
    listed = _run([python, "-I", "-c", LIST_DISTRIBUTIONS], cwd=work, env=_isolated_env())
    venv = ClientVenv(root, python, _tree_size(root), json.loads(listed))
    print(f"\nclient venv: {venv.size_bytes / 2**20:.1f} MiB")
    for name, version in sorted(venv.distributions.items(), key=lambda item: item[0].lower()):
        print(f"  {name} {version}")
    return venv


def test_the_wheels_install_alone_without_the_services_dependencies(
    wheels: Wheels, client_venv: ClientVenv
) -> None:
    # `imagepipe` is a namespace both wheels share (PEP 420): neither may own its __init__.
    for wheel in (wheels.contract, wheels.client):
        assert "imagepipe/__init__.py" not in zipfile.ZipFile(wheel).namelist(), wheel.name
    installed = {_normalized(name) for name in client_venv.distributions}
    assert {"imagepipe-contract", "imagepipe-client"} <= installed
    assert installed.isdisjoint(SERVER_ONLY)
    # Nor anything else only the services need.
    services_only = (
        _requirement_names(REPO / "pyproject.toml")
        - _requirement_names(REPO / "packages" / "client" / "pyproject.toml")
        - _requirement_names(REPO / "packages" / "contract" / "pyproject.toml")
        - {"imagepipe-contract", "imagepipe-client"}
    )
    assert services_only, "the services declare dependencies of their own"
    assert installed.isdisjoint(services_only), installed & services_only

    work = client_venv.root.parent
    client_file, contract_file = _run(
        [client_venv.python, "-I", "-c", WHERE_FROM], cwd=work, env=_isolated_env()
    ).split()
    for imported in (client_file, contract_file):
        assert Path(imported).is_relative_to(client_venv.root), imported
    # The generated package came with its type stubs and the descriptor set reflection reads.
    package = Path(contract_file).parent
    for name in ("py.typed", "catalog_pb2.pyi", "catalog_pb2_grpc.pyi", "descriptor_set.binpb"):
        assert (package / name).is_file(), name
    assert (Path(client_file).parent / "py.typed").is_file()


def test_an_upload_through_the_installed_client_reads_back(
    client_venv: ClientVenv, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    photo = corpus / PHOTO
    work = client_venv.root.parent
    script = work / "use_the_client.py"
    script.write_text(USE_THE_CLIENT)

    out = _run(
        [client_venv.python, "-I", script, photo], cwd=work, env=_isolated_env(stack, tenant)
    )

    result = json.loads(out)
    assert result["asset_id"] == result["uploaded"]
    assert result["status"] == "ready"
    assert result["content_hash"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    thumb = result["thumb"]
    assert max(thumb["width"], thumb["height"]) == THUMB_BOX
    assert thumb["head"] == "ffd8ff"  # a JPEG
    assert thumb["length"] == thumb["size_bytes"] > 0


def test_the_cli_extra_brings_the_imagepipe_command(
    client_venv: ClientVenv, wheels: Wheels, stack: Stack, tenant: Tenant, corpus: Path
) -> None:
    work = client_venv.root.parent
    _pip_install(client_venv.python, f"{wheels.client}[cli]")
    print(f"\nclient venv with [cli]: {_tree_size(client_venv.root) / 2**20:.1f} MiB")
    command = client_venv.root / "bin" / "imagepipe"
    env = _isolated_env(stack, tenant)
    photo = corpus / PHOTO

    (uploaded,) = map(
        json.loads, _run([command, "upload", "--json", photo], cwd=work, env=env).splitlines()
    )
    (got,) = map(
        json.loads,
        _run([command, "get", "--json", uploaded["asset_id"]], cwd=work, env=env).splitlines(),
    )

    assert got["asset_id"] == uploaded["asset_id"]
    assert got["content_hash"] == hashlib.sha256(photo.read_bytes()).hexdigest()
