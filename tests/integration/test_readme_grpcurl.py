"""The README's grpcurl examples, run as written against the real stack.

Only the addresses, the tenant names and `<asset id>` are replaced; `var/stack.env`
is one holding this stack's admin key, as `make run` writes it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from devstack import Stack
from tests.conftest import CORPUS, REPO
from tests.helpers import Services, Tenant, downsized_jpeg, upload, wait_for_status

DEFAULT_PORTS = {"ingest": 50051, "catalog": 50052, "renderer": 50053, "quality": 50054}


def _readme_grpcurl_script() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### grpcurl") : readme.index("## Guarantees")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 3, "the grpcurl section's examples are gone"
    return "\n".join(blocks)


def test_the_readme_grpcurl_examples_work_as_written(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant], tmp_path: Path
) -> None:
    assert shutil.which("jq"), "jq is not installed (the README's examples use it)"
    owner = make_tenant("readme")
    photo = downsized_jpeg(CORPUS / "photo_iphone6_gps.jpg", (800, 600))
    asset_id = upload(services, owner, photo).asset.asset_id
    wait_for_status(services, owner, asset_id)

    script = _readme_grpcurl_script()
    for name, port in DEFAULT_PORTS.items():
        script = script.replace(f"localhost:{port}", stack.address(name))
    unique = secrets.token_hex(4)
    script = re.sub(r'"name": "(\w+)"', lambda m: f'"name": "{m[1]}-{unique}"', script)
    script = script.replace("<asset id>", asset_id)
    # The tenant the examples create owns no asset: read as the one that does, once the
    # created key has been checked.
    script = script.replace(
        "| jq -r .secretKey)\n",
        '| jq -r .secretKey)\n[[ $IMAGEPIPE_API_KEY == ip_* ]]; IMAGEPIPE_API_KEY="$OWNER_KEY"\n',
    )
    # curl fails on an HTTP error (a URL mangled by \\u0026 is answered 400).
    script = script.replace("curl -o ", "curl -fsS -o ")
    assert script.count("curl -fsS -o ") == 1

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "stack.env").write_text(f"IMAGEPIPE_ADMIN_KEY={stack.admin_key}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPIPE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OWNER_KEY"] = owner.key
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"secretKey": "ip_' in result.stdout
    # -emit-defaults shows a zero distance that proto3 JSON would leave out.
    assert '"hashDistance":0' in result.stdout.replace(" ", "")
    assert (tmp_path / "card.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
