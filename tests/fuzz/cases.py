"""The fuzz cases: each one request (or stream) as bytes, built from (seed, index) alone.

A case is fully described by its method, credential and message bytes, so any case
replays exactly from its seed and index (`python -m tests.fuzz --seed S --only I`).
Families:
- upload/*: a seed image, mutated, uploaded by the upload tenant; upload/metadata-*: a
  valid JPEG whose EXIF, XMP, IPTC or ICC block is hostile;
- compare/*: two images (mutated or not) through QualityService.CompareImages;
- header/*: a valid image under a hostile UploadHeader (NUL, newline, invalid UTF-8
  sent as raw bytes, 10 KB fields, 1 000 labels) or a malformed stream;
- field/*: a hostile id, page token, page size or enum value on an RPC that takes it;
- raw/*: bytes that do not parse as the request message, sent to every RPC of every
  service, with and without credentials.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from google.protobuf import descriptor, message
from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_pb2,
    common_pb2,
    events_pb2,
    ingest_pb2,
    quality_pb2,
    renderer_pb2,
    tenant_admin_pb2,
)
from tests.fuzz import wire
from tests.fuzz.metadata_blocks import hostile_metadata_image
from tests.fuzz.mutate import mutate, pick_seed, png_chunk, seeds

__all__ = ["Case", "Context", "Method", "make_case", "methods"]

# Which stack process serves each service of the contract (checked against the protos).
HOSTS = {
    "imagepipe.v1.IngestService": "ingest",
    "imagepipe.v1.CatalogService": "catalog",
    "imagepipe.v1.TenantAdminService": "catalog",
    "imagepipe.v1.CatalogInternalService": "catalog",
    "imagepipe.v1.RendererService": "renderer",
    "imagepipe.v1.QualityService": "quality",
}
MODULES: tuple[ModuleType, ...] = (
    ingest_pb2,
    catalog_pb2,
    tenant_admin_pb2,
    catalog_internal_pb2,
    renderer_pb2,
    quality_pb2,
)
CREDENTIALS = ("none", "tenant", "admin", "internal", "bad")


@dataclass(frozen=True)
class Method:
    path: str  # /imagepipe.v1.Service/Method
    host: str
    request: type[message.Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def methods() -> dict[str, Method]:
    """Every RPC of every imagepipe service, from the generated descriptors."""
    found: dict[str, Method] = {}
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            host = HOSTS.get(service.full_name)
            if host is None:
                raise AssertionError(f"{service.full_name}: which process serves it? (HOSTS)")
            for method in service.methods:
                request = _message_class(method.input_type)
                found[method.name] = Method(
                    f"/{service.full_name}/{method.name}",
                    host,
                    request,
                    method.client_streaming,
                    method.server_streaming,
                )
    return found


def _message_class(desc: descriptor.Descriptor) -> type[message.Message]:
    for module in (*MODULES, common_pb2, events_pb2):
        cls = getattr(module, desc.name, None)
        if cls is not None and cls.DESCRIPTOR.full_name == desc.full_name:
            return cls  # type: ignore[no-any-return]
    raise AssertionError(f"no class for {desc.full_name}")


@dataclass(frozen=True)
class Case:
    index: int
    family: str  # input class, e.g. "upload/truncate", "raw/invalid-utf8"
    detail: str  # what exactly, e.g. the seed file and the mutations
    method: Method
    credential: str  # one of CREDENTIALS
    messages: tuple[bytes, ...]
    # Uploads by the upload tenant: an OK answer adds its asset to what may exist.
    upload: bool = False
    # A hostile header on a fresh image: what an accepted upload must have stored.
    sent: tuple[str, str, tuple[tuple[str, str], ...]] | None = None

    @property
    def label(self) -> str:
        return f"{self.method.name} {self.family} [{self.credential}]"


@dataclass
class Context:
    """Real values of the running stack that cases mix into hostile ones."""

    rpc_tenant_id: str
    upload_tenant_id: str
    own_assets: list[str]  # assets of the rpc tenant
    own_jobs: list[str]
    other_assets: list[str]  # assets of the upload tenant (not the rpc tenant's)
    presets: list[str]
    tokens: dict[str, str] = field(default_factory=dict)  # real next_page_tokens by RPC


# Hostile values -----------------------------------------------------------------------

Text = str | bytes  # bytes: sent as raw string-field bytes (may be invalid UTF-8)
INVALID_UTF8: tuple[bytes, ...] = (
    b"\xff",
    b"abc\xfe",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a lone surrogate
    b"\xe2\x82",  # cut sequence
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
)


def hostile_text(rng: random.Random, real: Sequence[str] = ()) -> Text:
    base = rng.choice(list(real)) if real else "name"
    choices: list[Text] = [
        "",
        " ",
        "\x00",
        "a\x00b",
        base + "\x00",
        "\n",
        base + "\n",
        "\r\n" + base,
        "\t" + base,
        base.upper(),
        "{" + base + "}",
        "urn:uuid:" + base,
        base[:-1],
        base + "0",
        "x" * 10_000,
        "x" * 256,
        "x" * 64,
        "é" * 300,
        "\u202e" + base,
        "١٢٣٤",
        "' OR 1=1 --",
        "%",
        "_",
        "../../etc/passwd",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        str(uuid.UUID(int=rng.getrandbits(128))),
        rng.choice(INVALID_UTF8),
        base.encode() + rng.choice(INVALID_UTF8),
    ]
    return rng.choice(choices)


def hostile_id(rng: random.Random, own: Sequence[str], other: Sequence[str] = ()) -> Text:
    roll = rng.random()
    if own and roll < 0.15:
        return rng.choice(list(own))
    if other and roll < 0.25:
        return rng.choice(list(other))
    return hostile_text(rng, own or [str(uuid.UUID(int=rng.getrandbits(128)))])


UINT32 = (0, 1, 7, 64, 2**16, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
INT32 = (0, 1, -1, 500, 501, 2**31 - 1, -(2**31))
ENUMS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, -1, 2**31 - 1, -(2**31))


class RawVarint(int):
    """A varint sent as is, beyond what the field's type allows (the parser truncates)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hostile_token(rng: random.Random, query: str, real: str) -> tuple[bool, Text]:
    """A page token, and whether it is forged for `query` (so it passes the fingerprint)."""
    fingerprint = hashlib.sha256(query.encode()).hexdigest()[:12]
    # Times that parse but leave PostgreSQL's range once made UTC come up most often.
    times: list[Any] = [
        *["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"] * 3,
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00",
        "not a time",
        "",
        123,
        None,
        [],
        {"t": 1},
    ]
    ids: list[Any] = ["not-a-uuid", "", 123, 1.5, None, [], {"a": 1}, "\x00", "0" * 32]
    kind = rng.choice(["forged", "forged", "forged", "json", "random", "mangled", "real", "text"])
    if kind == "forged":
        # One hostile part at a time; the others as a real token has them.
        payload: dict[str, Any] = {
            "q": fingerprint,
            "t": "2026-01-01T00:00:00+00:00",
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
        }
        part = rng.choice(["t", "t", "id", "missing", "extra"])
        if part == "t":
            payload["t"] = rng.choice(times)
        elif part == "id":
            payload["id"] = rng.choice(ids)
        elif part == "missing":
            del payload[rng.choice(["q", "t", "id"])]
        else:
            payload["x"] = "y" * rng.choice([1, 5000])
        return True, _b64(json.dumps(payload).encode())
    if kind == "json":
        return False, _b64(rng.choice([b"[]", b"null", b'"x"', b"1", b"{", b"\xff\xfe", b"{}"]))
    if kind == "random":
        return False, _b64(rng.randbytes(rng.choice([1, 8, 64, 700])))
    if kind == "mangled" and real:
        at = rng.randrange(len(real))
        mangled = [real[:at], real + "=", real + "==", real[:at] + "!" + real[at + 1 :]]
        return False, rng.choice(mangled)
    if kind == "real" and real:
        return False, real
    return False, hostile_text(rng)


def build(cls: type[message.Message], fields: Mapping[str, Any]) -> bytes:
    """Serialize through the library; raw string bytes and out-of-range varints by hand."""
    msg = cls()
    raw = b""
    for name, value in fields.items():
        fd = cls.DESCRIPTOR.fields_by_name[name]
        is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
        if isinstance(value, bytes) and fd.type == fd.TYPE_STRING:
            raw += wire.length_delimited(fd.number, value)
        elif isinstance(value, RawVarint):
            raw += wire.varint_field(fd.number, int(value))
        elif is_map:
            for k, v in value.items():
                k_bytes = k if isinstance(k, bytes) else k.encode()
                v_bytes = v if isinstance(v, bytes) else v.encode()
                raw += wire.map_entry(fd.number, [(k_bytes, v_bytes)])
        elif isinstance(value, bytes) and fd.message_type is not None:
            raw += wire.length_delimited(fd.number, value)
        elif isinstance(value, message.Message):
            getattr(msg, name).CopyFrom(value)
        elif isinstance(value, list):
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg.SerializeToString() + raw


# Upload and compare streams -----------------------------------------------------------


def _chunks(data: bytes, rng: random.Random, part: str, cls: type[message.Message]) -> list[bytes]:
    size = rng.choice([4096, 65536, 1024 * 1024, 1024 * 1024])
    return [
        cls(**{part: data[i : i + size]}).SerializeToString() for i in range(0, len(data), size)
    ]


def _upload_header(
    filename: Text, content_type: Text = "", labels: Mapping[Any, Any] = {}
) -> bytes:
    header = build(
        ingest_pb2.UploadHeader,
        {"filename": filename, "content_type": content_type, "labels": dict(labels)},
    )
    return wire.length_delimited(1, header)


def upload_mutant(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    seed = pick_seed(rng)
    if rng.random() < 0.08:
        mutation, data = "none", seed.data
    else:
        mutation, data = mutate(rng, seed)
    messages = [_upload_header(seed.name), *_chunks(data, rng, "chunk", ingest_pb2.UploadRequest)]
    family = "upload/" + mutation.split("+")[0].split("-")[0]
    return Case(
        index,
        family,
        f"{seed.name} {mutation} -> {len(data)} bytes",
        m["Upload"],
        "tenant",
        tuple(messages),
        upload=True,
    )


def upload_metadata(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    kind, data = hostile_metadata_image(rng, f"{ctx.upload_tenant_id} {index} {rng.random()}")
    messages = [_upload_header("meta.jpg"), *_chunks(data, rng, "chunk", ingest_pb2.UploadRequest)]
    return Case(
        index,
        f"upload/metadata-{kind}",
        f"JPEG with a hostile {kind} block -> {len(data)} bytes",
        m["Upload"],
        "tenant",
        tuple(messages),
        upload=True,
    )


def compare_mutant(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    def one() -> tuple[str, bytes]:
        seed = pick_seed(rng)
        while seed.size_class == "large":  # two full decodes and SSIM: keep them moderate
            seed = pick_seed(rng)
        if rng.random() < 0.4:
            return seed.name, seed.data
        mutation, data = mutate(rng, seed)
        return f"{seed.name} {mutation}", data

    (ref_name, reference), (cand_name, candidate) = one(), one()
    header = quality_pb2.CompareImagesRequest(
        header=quality_pb2.CompareImagesHeader(reference_filename="r", candidate_filename="c")
    ).SerializeToString()
    cls = quality_pb2.CompareImagesRequest
    parts = _chunks(reference, rng, "reference_chunk", cls) + _chunks(
        candidate, rng, "candidate_chunk", cls
    )
    if rng.random() < 0.2:
        rng.shuffle(parts)
    return Case(
        index,
        "compare/mutant",
        f"reference {ref_name} ({len(reference)} B), candidate {cand_name} ({len(candidate)} B)",
        m["CompareImages"],
        "tenant",
        (header, *parts),
    )


def unique_png(tag: str) -> bytes:
    """A tiny valid PNG made unique by a text chunk (so no upload is a duplicate)."""
    png = next(s.data for s in seeds() if s.name == "edge_1x1.png")
    return png[:33] + png_chunk(b"tEXt", b"fuzz\x00" + tag.encode()) + png[33:]


def upload_header(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    image = unique_png(f"{ctx.upload_tenant_id} {index} {rng.random()}")
    chunk = ingest_pb2.UploadRequest(chunk=image).SerializeToString()
    what = rng.choice(
        ["filename", "content_type", "label-key", "label-value", "labels-many", "stream", "combo"]
    )
    filename: Text = "fuzz.png"
    content_type: Text = "image/png"
    labels: dict[Any, Any] = {"fuzz": "header"}
    if what == "filename":
        filename = hostile_text(rng, ["fuzz.png"])
    elif what == "content_type":
        content_type = hostile_text(rng, ["image/png"])
    elif what == "label-key":
        keys: list[Text] = ["fuzz\n", "Fuzz", "", "-a", "a-", "a" * 64, "a" * 63, "a\x00b"]
        key = rng.choice([*keys, "é", "a b", "a/b", hostile_text(rng, ["fuzz"])])
        labels = {key: "v"}
    elif what == "label-value":
        labels = {"fuzz": hostile_text(rng, ["value"])}
    elif what == "labels-many":
        count = rng.choice([32, 33, 100, 1000])
        labels = {f"k{i}": rng.choice(["v", "x" * 255]) for i in range(count)}
    elif what == "combo":
        filename = hostile_text(rng, ["fuzz.png"])
        content_type = hostile_text(rng, ["image/png"])
        labels = {hostile_text(rng, ["k"]): hostile_text(rng, ["v"])}
    header = _upload_header(filename, content_type, labels)
    if what == "stream":
        shape = rng.choice(
            [
                "empty",
                "header-only",
                "chunk-first",
                "header-twice",
                "header-after-chunk",
                "empty-part",
            ]
        )
        messages = {
            "empty": [],
            "header-only": [header],
            "chunk-first": [chunk, header],
            "header-twice": [header, header, chunk],
            "header-after-chunk": [header, chunk, header],
            "empty-part": [header, b"", chunk],
        }[shape]
        detail = f"stream {shape}"
    else:
        messages = [header, chunk]
        first_key, first_value = next(iter(labels.items()))
        detail = (
            f"{what}: filename {_show(filename)} content_type {_show(content_type)} "
            f"labels {len(labels)}: {_show(first_key)}={_show(first_value)}"
        )
    sent = None
    if all(isinstance(v, str) for v in (filename, content_type, *labels, *labels.values())):
        sent = (str(filename), str(content_type), tuple(sorted(labels.items())))
    return Case(index, f"header/{what}", detail, m["Upload"], "tenant", tuple(messages), True, sent)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


# Hostile fields on every RPC that takes them -----------------------------------------

FieldBuilder = Callable[[random.Random, Context], dict[str, Any]]


def _page(rng: random.Random, query: str, real: str, filters: dict[str, Any]) -> dict[str, Any]:
    """Paging fields; a token forged for the unfiltered listing goes without filters."""
    forged, token = hostile_token(rng, query, real)
    fields: dict[str, Any] = {"page_token": token}
    if rng.random() < 0.5:
        fields["page_size"] = rng.choice(INT32)
    return fields if forged else {**fields, **filters}


# Timestamps a filter may carry: real ones, the edges of what a Timestamp may hold, and
# past them (seconds beyond year 9999, negative or overflowing nanos).
_TIMES = (
    (0, 0),
    (1_700_000_000, 0),
    (-62_135_596_800, 0),
    (253_402_300_799, 999_999_999),
    (2**62, 0),
    (-(2**63), 0),
    (0, -1),
    (0, 2**31 - 1),
)


def _asset_filters(rng: random.Random) -> dict[str, Any]:
    """ListAssets' label and capture-time filters, hostile or not."""
    filters: dict[str, Any] = {}
    if rng.random() < 0.4:
        filters["labels"] = rng.choice(
            [
                {"album": "x"},
                {hostile_text(rng): hostile_text(rng)},
                {f"k{i}": "v" for i in range(rng.choice([33, 1000]))},
            ]
        )
    for name in ("capture_time_from", "capture_time_to"):
        if rng.random() < 0.3:
            seconds, nanos = rng.choice(_TIMES)
            filters[name] = Timestamp(seconds=seconds, nanos=nanos)
    return filters


def _mask(rng: random.Random) -> bytes:
    """A FieldMask's bytes (its paths may be invalid UTF-8): known, unknown, none."""
    paths: list[Text] = rng.choice(
        [
            [],
            ["unsigned_delivery"],
            ["unsigned_delivery", "unsigned_delivery"],
            ["gps"],
            ["unsigned_delivery", hostile_text(rng, ["unsigned_delivery"])],
            [hostile_text(rng, ["unsigned_delivery"])] * rng.choice([1, 50]),
        ]
    )
    return b"".join(
        wire.length_delimited(1, p if isinstance(p, bytes) else p.encode()) for p in paths
    )


def _formats(rng: random.Random) -> list[int]:
    return rng.choice([[], [0], [99], [-1], [1, 1, 1], [8, 7, 99], [2**31 - 1], [3] * 1000])


DOUBLES = (0.0, -0.0, 0.5, 1.0, 1.0000001, -1.0, float("nan"), float("inf"), float("-inf"), 1e308)


def _preset(rng: random.Random, ctx: Context) -> bytes:
    """A Preset message's bytes: real names and sane sizes beside hostile ones."""
    return build(
        renderer_pb2.Preset,
        {
            "name": rng.choice([*ctx.presets, "hero", hostile_text(rng, ctx.presets)]),
            "max_width": rng.choice([400, *UINT32]),
            "max_height": rng.choice([300, *UINT32]),
            "formats": _formats(rng),
            "quality": rng.choice([85, *UINT32]),
            "min_ssim": rng.choice(DOUBLES),
            "fit": rng.choice(ENUMS),
            "gravity": rng.choice(ENUMS),
            "chroma_subsampling": rng.choice(ENUMS),
            "version": hostile_text(rng),
        },
    )


def _preset_mask(rng: random.Random) -> bytes:
    """An UpdatePreset mask: real fields, name (immutable), unknown ones, none."""
    paths: list[Text] = rng.choice(
        [[], ["max_width"], ["fit", "gravity"], ["name"], ["version"], [hostile_text(rng)]]
    )
    return b"".join(
        wire.length_delimited(1, p if isinstance(p, bytes) else p.encode()) for p in paths
    )


FIELD_BUILDERS: dict[str, FieldBuilder] = {
    "GetAsset": lambda r, c: {"asset_id": hostile_id(r, c.own_assets, c.other_assets)},
    "WatchAsset": lambda r, c: {"asset_id": hostile_id(r, c.own_assets, c.other_assets)},
    "DeleteAsset": lambda r, c: {"asset_id": hostile_id(r, c.own_assets, c.other_assets)},
    "Compare": lambda r, c: {"asset_id": hostile_id(r, c.own_assets, c.other_assets)},
    # Forged tokens carry the fingerprint of the listing's query (services/catalog).
    "ListAssets": lambda r, c: _page(
        r,
        f"assets:{c.rpc_tenant_id}:None",
        c.tokens.get("ListAssets", ""),
        {
            **({"status": r.choice(ENUMS)} if r.random() < 0.5 else {}),
            **_asset_filters(r),
        },
    ),
    "ListJobs": lambda r, c: _page(
        r,
        f"jobs:{c.rpc_tenant_id}:None:None",
        c.tokens.get("ListJobs", ""),
        {
            **({"state": r.choice(ENUMS)} if r.random() < 0.5 else {}),
            **(
                {"asset_id": hostile_id(r, c.own_assets, c.other_assets)}
                if r.random() < 0.3
                else {}
            ),
        },
    ),
    "ListPoisonJobs": lambda r, c: _page(
        r,
        f"poison:{c.rpc_tenant_id}:False",
        "",
        {"include_replayed": True} if r.random() < 0.3 else {},
    ),
    "ListTenants": lambda r, c: {
        "page_token": r.choice(
            [
                hostile_text(r),
                _b64(b"a\x00"),
                _b64(b"\xff\xfe"),
                _b64(b"z" * 5000),
                c.tokens.get("ListTenants", ""),
                "!!",
            ]
        ),
        "page_size": r.choice(INT32),
    },
    "GetJob": lambda r, c: {"job_id": hostile_id(r, c.own_jobs)},
    "RetryPoisonJob": lambda r, c: {"poison_job_id": hostile_id(r, c.own_jobs)},
    "FindSimilar": lambda r, c: {
        **(
            {"asset_id": hostile_id(r, c.own_assets, c.other_assets)}
            if r.random() < 0.5
            else {
                "perceptual_hash": r.choice(
                    [*("", "zz", "0" * 16, "f" * 16, "0" * 17, "-1", "F" * 16), hostile_text(r)]
                )
            }
        ),
        "max_distance": r.choice(UINT32),
        "limit": r.choice(UINT32),
    },
    "GetRendition": lambda r, c: {
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
        "preset": r.choice([*c.presets, hostile_text(r, c.presets)]),
        "accept_formats": _formats(r),
        "url_ttl_seconds": r.choice(UINT32),
    },
    "ReadRendition": lambda r, c: {
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
        "preset": r.choice([*c.presets, hostile_text(r, c.presets)]),
        "accept_formats": _formats(r),
    },
    "Purge": lambda r, c: {
        "dry_run": r.random() < 0.7,
        "older_than_days": r.choice(UINT32),
    },
    "CreateTenant": lambda r, c: {
        "name": r.choice(["fuzz\n", "Fuzz", "a" * 64, "a" * 10_000, "-", hostile_text(r, ["fz"])])
    },
    "CreateApiKey": lambda r, c: {
        "tenant_id": hostile_id(r, [c.rpc_tenant_id]),
        "label": hostile_text(r, ["label"]),
    },
    "ListApiKeys": lambda r, c: {"tenant_id": hostile_id(r, [c.rpc_tenant_id])},
    # Never a real key id: revoking the fuzz tenants' keys would end the run.
    "RevokeApiKey": lambda r, c: {"key_id": hostile_text(r, ["0123456789abcdef"])},
    "Authenticate": lambda r, c: {
        "api_key": r.choice(
            [
                "ip_" + "0" * 16 + "_" + "0" * 40,
                "ip_" + "g" * 16 + "_" + "0" * 40,
                "ip__",
                hostile_text(r, ["ip_0123456789abcdef_" + "a" * 40]),
            ]
        )
    },
    "ResolveDuplicate": lambda r, c: {
        "tenant_id": hostile_id(r, [c.rpc_tenant_id]),
        "content_hash": r.choice(["", "0" * 64, "G" * 64, "0" * 63 + "\n", hostile_text(r)]),
    },
    "RegisterAsset": lambda r, c: {
        # The rpc tenant or none that exists: the upload tenant's rows are counted.
        "tenant_id": r.choice([c.rpc_tenant_id, hostile_id(r, [c.rpc_tenant_id])]),
        "content_hash": r.choice([hashlib.sha256(r.randbytes(8)).hexdigest(), hostile_text(r)]),
        "perceptual_hash": r.choice(["00000000000000ff", "", "zz", hostile_text(r)]),
        "filename": hostile_text(r, ["f.png"]),
        "declared_content_type": hostile_text(r, ["image/png"]),
        "content_type": r.choice(["image/png", hostile_text(r)]),
        "format": r.choice(ENUMS),
        "width": r.choice(UINT32),
        "height": r.choice(UINT32),
        "size_bytes": r.choice([0, 1, -1, 2**63 - 1, -(2**63)]),
        "frame_count": r.choice(UINT32),
        "labels": r.choice([{}, {"k": "v\x00"}, {"K\n": "v"}, {hostile_text(r): hostile_text(r)}]),
        "original_key": r.choice(["originals/x", "", hostile_text(r)]),
    },
    "MarkJobPublished": lambda r, c: {"job_id": hostile_id(r, c.own_jobs)},
    # Never the fuzz tenants' real jobs below: they would be fenced, failed or claimed
    # by someone other than the renderer, which is not a hostile client's reach.
    "ClaimUnpublishedJobs": lambda r, c: {
        "limit": r.choice([0, 1]),
        "lease_seconds": r.choice(UINT32),
        "min_age_seconds": RawVarint(r.choice([2**32 - 1, 2**40, 2**63])),
        "owner": hostile_text(r, ["fuzz"]),
    },
    "ClaimRenderJobs": lambda r, c: {
        "limit": 0,
        "lease_seconds": r.choice(UINT32),
        "owner": hostile_text(r, ["fuzz"]),
    },
    "StartJobAttempt": lambda r, c: {
        "job_id": hostile_text(r),
        "worker": hostile_text(r, ["w"]),
        "lease_seconds": r.choice(UINT32),
    },
    "CompleteJob": lambda r, c: {"job_id": hostile_text(r), "attempt": r.choice(UINT32)},
    "FailJobAttempt": lambda r, c: {
        "job_id": hostile_text(r),
        "attempt": r.choice(UINT32),
        "error": hostile_text(r, ["boom"]),
        "transient": r.random() < 0.5,
        "retry_after_seconds": r.choice(UINT32),
    },
    "RecordPoisonJob": lambda r, c: {
        "request": events_pb2.RenderRequest(
            job_id=str(uuid.UUID(int=r.getrandbits(128))), tenant_id=c.rpc_tenant_id
        ),
        "error": hostile_text(r, ["boom"]),
        "reason": r.choice(ENUMS),
    },
    "GetAssetObjects": lambda r, c: {
        "tenant_id": hostile_id(r, [c.rpc_tenant_id]),
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
    },
    # Delivery: signing keys, settings, URLs, and the delivery service's lookups.
    "CreateSigningKey": lambda r, c: {"label": hostile_text(r, ["site"])},
    "RevokeSigningKey": lambda r, c: {"key_id": hostile_text(r, ["0123456789abcdef"])},
    "UpdateTenantSettings": lambda r, c: {
        "settings": common_pb2.TenantSettings(unsigned_delivery=r.random() < 0.5),
        "update_mask": _mask(r),
    },
    "GetDeliveryUrl": lambda r, c: {
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
        "preset": r.choice([*c.presets, hostile_text(r, c.presets)]),
        "format": r.choice(ENUMS),
        "ttl_seconds": r.choice(UINT32),
        "key_id": r.choice(["", hostile_text(r, ["0123456789abcdef"])]),
    },
    "GetDeliveryAccess": lambda r, c: {
        "tenant_id": hostile_id(r, [c.rpc_tenant_id]),
        "key_id": hostile_text(r, ["0123456789abcdef"]),
    },
    "ResolveDelivery": lambda r, c: {
        "tenant_id": hostile_id(r, [c.rpc_tenant_id]),
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
        "preset": r.choice([*c.presets, hostile_text(r, c.presets)]),
        "accept_formats": _formats(r),
    },
    # Presets, focal points and backfills.
    "CreatePreset": lambda r, c: {"preset": _preset(r, c)},
    "UpdatePreset": lambda r, c: {"preset": _preset(r, c), "update_mask": _preset_mask(r)},
    "DeletePreset": lambda r, c: {"name": r.choice(["hero", hostile_text(r, c.presets)])},
    "SetFocalPoint": lambda r, c: {
        "asset_id": hostile_id(r, c.own_assets, c.other_assets),
        **(
            {"focal_point": common_pb2.FocalPoint(x=r.choice(DOUBLES), y=r.choice(DOUBLES))}
            if r.random() < 0.8
            else {}
        ),
    },
    "StartBackfill": lambda r, c: {
        "scope": r.choice(ENUMS),
        "preset": r.choice(["", *c.presets, hostile_text(r, c.presets)]),
        "asset_ids": r.choice(
            [
                [],
                [hostile_id(r, c.own_assets, c.other_assets)],
                [str(uuid.UUID(int=r.getrandbits(128)))] * 1001,
            ]
        ),
    },
    "GetBackfill": lambda r, c: {"backfill_id": hostile_id(r, [])},
}
NEEDS = {"admin": {"TenantAdminService", "GetRendererStatus"}, "internal": {"CatalogInternal"}}


def _credential_for(method: Method) -> str:
    for credential, markers in NEEDS.items():
        if any(marker in method.path for marker in markers):
            return credential
    return "tenant"


def hostile_field(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    name = rng.choice(sorted(FIELD_BUILDERS))
    method = m[name]
    fields = FIELD_BUILDERS[name](rng, ctx)
    request = build(method.request, fields)
    detail = ", ".join(f"{k}={_show(v)}" for k, v in fields.items())
    token = fields.get("page_token")
    if isinstance(token, str) and token.startswith("eyJ"):  # JSON: show what was forged
        with contextlib.suppress(ValueError):  # binascii.Error: a mangled real token
            detail += f" (token {base64.urlsafe_b64decode(token + '=' * (-len(token) % 4))!r})"
    credential = _credential_for(method)
    if rng.random() < 0.05:
        credential = rng.choice(CREDENTIALS)
    return Case(index, f"field/{name}", detail, method, credential, (request,))


# Bytes that are not a valid message -------------------------------------------------


def _string_paths(desc: descriptor.Descriptor, depth: int = 3) -> list[tuple[int, ...]]:
    """Field-number paths to every string field, nested messages and map entries included."""
    paths: list[tuple[int, ...]] = []
    for fd in desc.fields:
        if fd.type == fd.TYPE_STRING:
            paths.append((fd.number,))
        elif fd.message_type is not None and depth > 1:
            paths += [(fd.number, *p) for p in _string_paths(fd.message_type, depth - 1)]
    return paths


def _nested(path: tuple[int, ...], value: bytes) -> bytes:
    for number in reversed(path):
        value = wire.length_delimited(number, value)
    return value


RAW_SHAPES = (
    "garbage",
    "invalid-utf8",
    "bad-wire-type",
    "field-zero",
    "cut-varint",
    "overlong",
    "bad-length",
    "cut-length",
    "garbage-after-valid",
)


def invalid_bytes(rng: random.Random, cls: type[message.Message]) -> tuple[str, bytes]:
    """Bytes the protobuf runtime refuses as `cls` (tries shapes until one is refused)."""
    strings = _string_paths(cls.DESCRIPTOR)  # type: ignore[arg-type]
    for _ in range(50):
        shape = rng.choice(RAW_SHAPES)
        if shape == "garbage":
            data = rng.randbytes(rng.choice([1, 2, 7, 64, 1000, 70_000]))
        elif shape == "invalid-utf8":
            if not strings:
                continue
            data = _nested(rng.choice(strings), rng.choice(INVALID_UTF8))
        elif shape == "bad-wire-type":
            data = wire.key(rng.randrange(1, 20), rng.choice([6, 7])) + b"\x00" * 8
        elif shape == "field-zero":
            data = b"\x00" + rng.randbytes(3)
        elif shape == "cut-varint":
            data = wire.key(rng.randrange(1, 20), wire.VARINT) + b"\xff" * rng.randrange(1, 5)
        elif shape == "overlong":
            data = wire.key(1, wire.VARINT) + b"\xff" * 11 + b"\x01"
        elif shape == "bad-length":
            data = wire.key(rng.randrange(1, 20), wire.LENGTH) + wire.varint(2**31 + 5) + b"ab"
        elif shape == "cut-length":
            data = wire.key(rng.randrange(1, 20), wire.LENGTH) + wire.varint(50) + b"abc"
        else:
            data = cls().SerializeToString() + wire.key(1, 7)
        if not wire.is_valid(cls, data):
            return shape, data
    return "field-zero", b"\x00"


def raw_message(rng: random.Random, ctx: Context, index: int, m: dict[str, Method]) -> Case:
    method = m[rng.choice(sorted(m))]
    shape, data = invalid_bytes(rng, method.request)
    credential = rng.choice([*CREDENTIALS, _credential_for(method), _credential_for(method)])
    messages: list[bytes] = [data]
    if method.client_streaming and rng.random() < 0.5:
        # A valid first message, then the bad one.
        if method.name == "Upload":
            first = _upload_header("raw.png")
        else:
            first = quality_pb2.CompareImagesRequest(
                header=quality_pb2.CompareImagesHeader()
            ).SerializeToString()
        messages = [first, data]
        shape += " after a valid header"
    return Case(
        index,
        f"raw/{shape.split()[0]}",
        f"{shape}: {len(data)} bytes {data[:12]!r}",
        method,
        credential,
        tuple(messages),
        upload=method.name == "Upload",
    )


Family = Callable[[random.Random, Context, int, dict[str, Method]], Case]
FAMILIES: list[tuple[Family, int]] = [
    (upload_mutant, 40),
    (upload_metadata, 8),
    (compare_mutant, 8),
    (upload_header, 12),
    (hostile_field, 20),
    (raw_message, 20),
]


def make_case(seed: int, index: int, ctx: Context, m: dict[str, Method]) -> Case:
    """Case `index` of run `seed`: the same bytes every time for the same stack values."""
    rng = random.Random(f"{seed}:{index}")
    family = rng.choices([f for f, _ in FAMILIES], weights=[w for _, w in FAMILIES])[0]
    return family(rng, ctx, index, m)
