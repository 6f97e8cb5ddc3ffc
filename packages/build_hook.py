"""Hatchling build hook of the two wheels in packages/: their files come from the repository.

Neither project keeps code in its own directory. The client ships the repository's
imagepipe/client and imagepipe/cli; the contract ships imagepipe/v1 generated from protos/
while its wheel is built. Each pyproject.toml says what to take:

    [tool.hatch.build.targets.wheel.hooks.custom]
    path = "../build_hook.py"
    tree = ["imagepipe/client", "imagepipe/cli"]  # repository paths: a package dir, else a .py
    generate = "generate.py"                       # run as `python generate.py OUT`; ships OUT

Editable installs take nothing from here: `dev-mode-dirs` makes them a path entry to the
repository root, so the working tree is what runs (`make proto` fills its imagepipe/v1).

`imagepipe` itself is a native namespace package (PEP 420: no imagepipe/__init__.py). Each
wheel installs only its own subpackage, so neither owns a shared __init__.py that installing
one would overwrite and uninstalling either would delete, as with pkgutil-style namespaces,
whose shim only served Pythons without PEP 420. Each subpackage carries its own py.typed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from packaging.requirements import Requirement

# The generated code refuses to import under an older grpcio or protobuf than the generator's
# (GRPC_GENERATED_VERSION, ValidateProtobufRuntimeVersion), and grpcio-tools requires exactly
# that runtime of itself: the contract must declare the same, or it installs and then fails.
GENERATOR = "grpcio-tools"
GENERATED_CODE_NEEDS = ("grpcio", "protobuf")


class RepositoryTreeHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds repository paths, and generated code, to a standard (non-editable) wheel."""

    PLUGIN_NAME = "custom"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scratch: Path | None = None

    @property
    def repository(self) -> Path:
        return Path(self.root).resolve().parents[1]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        force_include: dict[str, str] = build_data["force_include"]
        for relative in self.config.get("tree", []):
            source = self._package_or_module(relative)
            force_include[str(source)] = str(source.relative_to(self.repository))
        generator = self.config.get("generate")
        if generator:
            self._check_runtime_requirements()
            self._scratch = Path(tempfile.mkdtemp(prefix="imagepipe-build-"))
            script = Path(self.root) / generator
            try:
                subprocess.run([sys.executable, str(script), str(self._scratch)], check=True)
            except subprocess.CalledProcessError:
                self._remove_scratch()  # finalize() is not called for a failed build
                raise
            for top in sorted(self._scratch.iterdir()):
                force_include[str(top)] = top.name

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _package_or_module(self, relative: str) -> Path:
        """`imagepipe/cli` is the directory when there is one, else imagepipe/cli.py."""
        path = self.repository / relative
        if path.is_dir():
            return path
        module = path.with_name(path.name + ".py")
        if module.is_file():
            return module
        raise FileNotFoundError(f"neither {path}/ nor {module} exists")

    def _check_runtime_requirements(self) -> None:
        needed = {
            requirement.name: requirement.specifier
            for requirement in map(Requirement, metadata.requires(GENERATOR) or [])
            if requirement.name in GENERATED_CODE_NEEDS and requirement.marker is None
        }
        declared = {
            requirement.name: requirement.specifier
            for requirement in map(Requirement, self.metadata.core.dependencies)
        }
        wrong = [
            f"{name}{needed[name]} (declared: {name}{declared.get(name, '')})"
            for name in GENERATED_CODE_NEEDS
            if name in needed and declared.get(name) != needed[name]
        ]
        if wrong:
            raise ValueError(
                f"{GENERATOR} {metadata.version(GENERATOR)} generates code that needs "
                + ", ".join(wrong)
                + ": make the project's dependencies say so"
            )
