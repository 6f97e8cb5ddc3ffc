"""The chaos tests' private RabbitMQ node: one per module, always stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import DEFAULT_PG, ServerMissing
from tests.chaos.rabbit import PrivateRabbit


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(tmp_path_factory.mktemp("rabbit"))
    try:
        with node:
            yield node
    except ServerMissing as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def pg_url() -> str:
    return os.environ.get("IMAGEPIPE_TEST_PG_URL", DEFAULT_PG)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "chaos"
