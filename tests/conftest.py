"""Fixtures: the real stack for contract/integration/fault tests, tenants, stubs.

The stack (S3 server, a fresh database, a RabbitMQ name prefix, a bucket, the four
services) starts once per test session on first use and is torn down at the end,
even when tests fail. A missing PostgreSQL or RabbitMQ fails those tests with a
message naming the server; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack import ServerMissing, Stack, StackConfig
from imagepipe.v1 import tenant_admin_pb2, tenant_admin_pb2_grpc
from tests.helpers import Services, Tenant, secrets_in_logs, stack_secrets

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
# Tenant keys handed out in this session, checked against the logs at the end.
ISSUED_TENANT_KEYS: dict[str, str] = {}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    work_dir = Path(tempfile.mkdtemp(prefix="imagepipe-test-"))
    config = StackConfig.from_env(work_dir)
    running = Stack(config)
    try:
        with running.running():
            yield running
        # Every log line of the whole run, every secret it was given: none may leak.
        secrets = {**stack_secrets(running), **ISSUED_TENANT_KEYS}
        leaks = secrets_in_logs(running.log_dir, secrets)
        if leaks:
            pytest.fail("secrets in service logs: " + ", ".join(leaks), pytrace=False)
    except ServerMissing as error:
        pytest.fail(str(error), pytrace=False)
    finally:
        if os.environ.get("IMAGEPIPE_KEEP_TEST_LOGS"):
            print(f"\nservice logs kept in {running.log_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def services(stack: Stack) -> Iterator[Services]:
    opened = Services.open(stack)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def make_tenant(services: Services, stack: Stack) -> Callable[[str], Tenant]:
    """Create a tenant with a unique name; returns its id and key."""
    counter = iter(range(1_000_000))

    def create(prefix: str = "t") -> Tenant:
        stub = tenant_admin_pb2_grpc.TenantAdminServiceStub(services.catalog)
        response = stub.CreateTenant(
            tenant_admin_pb2.CreateTenantRequest(name=f"{prefix}-{next(counter)}"),
            metadata=(("authorization", f"Bearer {stack.admin_key}"),),
            timeout=10,
        )
        ISSUED_TENANT_KEYS[f"key of tenant {response.tenant.name}"] = response.secret_key
        return Tenant(response.tenant.tenant_id, response.secret_key)

    return create


@pytest.fixture
def tenant(make_tenant: Callable[[str], Tenant]) -> Tenant:
    return make_tenant("t")


@pytest.fixture(scope="session")
def corpus() -> Path:
    return CORPUS


def pytest_configure(config: pytest.Config) -> None:
    # gRPC's C core logs fork warnings from hypothesis/multiprocessing users; keep quiet.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
