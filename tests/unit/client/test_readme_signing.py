"""The README's JavaScript and shell signers give exactly the URLs imagepipe.delivery does.

They are run as written (Node.js, which `make` needs for buf anyway; OpenSSL and GNU
coreutils' basenc), so the README cannot drift from the URL scheme.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from imagepipe.delivery import delivery_path, signed_url

README = Path(__file__).resolve().parents[3] / "README.md"
BASE = "https://img.example.test/cdn"


def _section() -> str:
    text = README.read_text()
    return text[text.index("## Serving images") : text.index("## Configuration")]


def _block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", _section(), re.S)
    (block,) = [str(b) for b in blocks if containing in b]
    return block


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (the README's signing examples use it)")
    return path


def _key() -> tuple[str, str]:
    return secrets.token_hex(8), secrets.token_urlsafe(32)


def test_the_javascript_signer_signs_like_the_client() -> None:
    key_id, secret = _key()
    tenant, asset = str(uuid.uuid4()), str(uuid.uuid4())
    cases: list[dict[str, Any]] = [
        {"preset": "card", "ext": "webp", "version": "0123456789abcdef", "expires": 1767225600},
        {"preset": "card", "version": "fedcba9876543210"},  # negotiated, no expiry
    ]
    calls = "\n".join(
        "console.log(deliveryUrl({base}, {args}));".format(
            base=json.dumps(BASE),
            args=json.dumps(
                {"tenantId": tenant, "assetId": asset, "keyId": key_id, "secret": secret, **case}
            ),
        )
        for case in cases
    )
    script = _block("js", "createHmac") + "\n" + calls
    done = subprocess.run(
        [_tool("node"), "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = [
        signed_url(
            BASE,
            delivery_path(tenant, asset, "card", "webp"),
            version="0123456789abcdef",
            expires=1767225600,
            key_id=key_id,
            secret=secret,
        ),
        signed_url(
            BASE,
            delivery_path(tenant, asset, "card", None),
            version="fedcba9876543210",
            key_id=key_id,
            secret=secret,
        ),
    ]
    assert done.stdout.splitlines() == expected


def test_the_shell_signer_signs_like_the_client() -> None:
    _tool("openssl")
    _tool("basenc")
    key_id, secret = _key()
    tenant, asset = str(uuid.uuid4()), str(uuid.uuid4())
    env = {
        **os.environ,
        "TENANT_ID": tenant,
        "ASSET_ID": asset,
        "VERSION": "0123456789abcdef",
        "EXPIRES": "1767225600",
        "IMAGEPIPE_SIGNING_KEY_ID": key_id,
        "IMAGEPIPE_SIGNING_SECRET": secret,
        "IMAGEPIPE_DELIVERY_URL": BASE,
    }
    done = subprocess.run(
        [_tool("bash"), "-euo", "pipefail", "-c", _block("sh", "openssl dgst")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == signed_url(
        BASE,
        delivery_path(tenant, asset, "card", "webp"),
        version="0123456789abcdef",
        expires=1767225600,
        key_id=key_id,
        secret=secret,
    )
