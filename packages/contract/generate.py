"""Generate the contract's Python package, imagepipe/v1, from protos/.

    python packages/contract/generate.py OUT    # writes OUT/imagepipe/v1/ afresh

The one protoc invocation of the repository: `make proto` runs it into the working tree
(what editable installs import) and the contract wheel's build hook runs it into a
temporary directory. Needs grpcio-tools and mypy-protobuf beside the interpreter that
runs it: the dev extras, or the wheel's build requirements.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
PACKAGE = Path("imagepipe", "v1")
# Reflection (services/shared/reflection.py) serves the comments and option values from it.
DESCRIPTOR_SET = "descriptor_set.binpb"


def _plugin(name: str) -> str:
    """A protoc plugin installed by mypy-protobuf: a console script beside this interpreter
    (a virtualenv's bin/) or, in pip's isolated build environment, on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise SystemExit(f"{name} not found: install mypy-protobuf beside {sys.executable}")
    return found


def generate(out: Path) -> Path:
    """Write imagepipe/v1 under `out` (replacing what was there); returns the package dir."""
    target = out / PACKAGE
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    well_known = resources.files("grpc_tools") / "_proto"
    protos = sorted(str(path) for path in (PROTOS / PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTOS / PACKAGE}")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={target / DESCRIPTOR_SET}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out=quiet:{out}",
            f"--mypy_grpc_out=quiet:{out}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            *protos,
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    for marker in ("__init__.py", "py.typed"):
        (target / marker).touch()
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUT_DIR")
    generate(Path(sys.argv[1]))
