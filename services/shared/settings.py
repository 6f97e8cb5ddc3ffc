"""Settings: every knob of every service, read once from the environment.

All variables carry the ``IMAGEPIPE_`` prefix. The README's configuration table is
rendered from this class (``python -m services.shared.settings``) and a unit test
keeps the two identical, so this file is the single source of truth.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.shared.presets import Preset

__all__ = ["Settings", "load_settings", "render_env_table"]

MIB = 1024 * 1024


DEFAULT_PRESETS = (
    '[{"name":"zoom","max_width":1200,"max_height":1200},'
    '{"name":"card","max_width":400,"max_height":400,"chroma_subsampling":"4:4:4"},'
    '{"name":"thumb","max_width":100,"max_height":100,"chroma_subsampling":"4:4:4"}]'
)


class Settings(BaseSettings):
    """Configuration of imagepipe; each field is one IMAGEPIPE_* environment variable."""

    model_config = SettingsConfigDict(env_prefix="IMAGEPIPE_", extra="ignore", frozen=True)

    # Connections
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5432/imagepipe"),
        description="PostgreSQL DSN of the catalog (only catalog connects).",
    )
    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="RabbitMQ URL, vhost included.",
    )
    amqp_prefix: str = Field(
        default="imagepipe",
        description="Prefix of every exchange and queue name.",
    )
    s3_endpoint: str = Field(default="127.0.0.1:9000", description="S3 endpoint host:port.")
    s3_public_endpoint: str = Field(
        default="",
        description="host:port used to sign presigned URLs, as clients reach S3 "
        "(empty: same as IMAGEPIPE_S3_ENDPOINT).",
    )
    s3_access_key: SecretStr = Field(
        default=SecretStr("imagepipe-access"), description="S3 access key."
    )
    s3_secret_key: SecretStr = Field(
        default=SecretStr("imagepipe-secret-key"), description="S3 secret key."
    )
    s3_bucket: str = Field(default="imagepipe", description="Bucket for originals and renditions.")
    s3_region: str = Field(
        default="us-east-1",
        description="S3 region (set so the client never asks the server for it).",
    )
    s3_secure: bool = Field(default=False, description="Use HTTPS to reach S3.")
    s3_threads: int = Field(default=16, ge=1, description="Threads for blocking S3 calls.")

    # Security
    admin_key: SecretStr = Field(
        default=SecretStr(""),
        description="Admin key for TenantAdminService and admin RPCs (empty: admin RPCs refused).",
    )
    internal_token: SecretStr = Field(
        default=SecretStr(""),
        description="Credential services present to each other (required; same on every service).",
    )
    key_pepper: SecretStr = Field(
        default=SecretStr(""),
        description="Secret mixed into API-key hashes and delivery signing secrets (HMAC-SHA256); "
        "changing it invalidates both kinds of key. Signing needs 16 characters or more.",
    )

    # Network
    bind_host: str = Field(default="127.0.0.1", description="Interface services listen on.")
    ingest_port: int = Field(default=50051, description="gRPC port of ingest.")
    catalog_port: int = Field(default=50052, description="gRPC port of catalog.")
    renderer_port: int = Field(default=50053, description="gRPC port of renderer.")
    quality_port: int = Field(default=50054, description="gRPC port of quality.")
    ingest_metrics_port: int = Field(default=9101, description="Prometheus port of ingest.")
    catalog_metrics_port: int = Field(default=9102, description="Prometheus port of catalog.")
    renderer_metrics_port: int = Field(default=9103, description="Prometheus port of renderer.")
    quality_metrics_port: int = Field(default=9104, description="Prometheus port of quality.")
    delivery_port: int = Field(default=8080, description="HTTP port of delivery (images).")
    delivery_metrics_port: int = Field(default=9105, description="Prometheus port of delivery.")
    catalog_addr: str = Field(
        default="127.0.0.1:50052", description="Where other services reach catalog."
    )
    rpc_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Deadline of service-to-service calls."
    )

    # Limits
    max_upload_bytes: int = Field(
        default=50 * MIB, gt=0, description="Largest accepted upload in bytes."
    )
    max_pixels: int = Field(
        default=50_000_000, gt=0, description="Largest accepted image in pixels."
    )
    similarity_threshold: int = Field(
        default=8, ge=0, le=11, description="Hamming distance for near duplicates (at most 11)."
    )
    tenant_max_in_flight: int = Field(
        default=32,
        ge=0,
        description="Render jobs one tenant may have queued or running at once; the rest wait "
        "in the outbox and tenants take turns (0: no limit).",
    )
    spool_dir: str = Field(
        default="", description="Where uploads are spooled (empty: the system temp dir)."
    )
    upload_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest an Upload or CompareImages stream may take, however slow the client.",
    )
    upload_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for the next message of an Upload or CompareImages stream; "
        "one silent for longer is refused (UPLOAD_IDLE).",
    )
    tenant_max_uploads: int = Field(
        default=64,
        ge=0,
        description="Upload streams one tenant may have open at once on one ingest process; "
        "more are refused (TOO_MANY_UPLOADS; 0: no limit).",
    )
    decode_workers: int = Field(
        default=2, ge=1, description="Processes decoding untrusted uploads in ingest."
    )

    # Rendering
    render_concurrency: int = Field(
        default=0, ge=0, description="Jobs a renderer runs at once (0: one per CPU)."
    )
    presets: Annotated[list[Preset], NoDecode] = Field(
        default_factory=lambda: _parse_preset_json(DEFAULT_PRESETS),
        description="Rendition presets as JSON (name, max_width, max_height, formats, "
        "quality, min_ssim, chroma_subsampling).",
    )
    delivery_limit: int = Field(
        default=5,
        ge=1,
        description="Deliveries of one render message before it is dead-lettered.",
    )
    retry_delays: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(2, 4, 8),
        description="Seconds before each retry of a failed render, comma-separated; one "
        "retry per delay, then the job is poison. Renderer, ingest and catalog must agree.",
    )

    # Catalog
    purge_days: int = Field(default=30, ge=0, description="Default age cut-off of Purge.")
    purge_rendition_grace_seconds: int = Field(
        default=3600,
        ge=0,
        description="How old an unreferenced rendition of a live or failed asset must be "
        "before Purge reclaims it (it may be between being written and being recorded).",
    )
    presign_ttl_seconds: int = Field(
        default=3600, ge=1, le=7 * 86400, description="Default lifetime of presigned URLs."
    )
    db_pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections of catalog.")

    # Delivery (HTTP)
    delivery_public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Base URL browsers reach delivery at (scheme, host, optional path prefix); "
        "GetDeliveryUrl builds URLs on it.",
    )
    delivery_lookup_ttl_seconds: float = Field(
        default=30.0,
        ge=0,
        le=60,
        description="How long delivery caches lookups (renditions, signing keys): deletes and "
        "revocations take effect within it.",
    )
    delivery_max_age_seconds: int = Field(
        default=60,
        ge=0,
        description="Cache-Control max-age of unversioned URLs (browsers revalidate with ETag).",
    )
    delivery_cache_bytes: int = Field(
        default=64 * MIB,
        ge=0,
        description="Memory for hot small renditions served without S3 (0: no cache).",
    )
    delivery_cache_max_object_bytes: int = Field(
        default=512 * 1024, ge=0, description="Largest rendition the hot cache keeps."
    )
    delivery_chunk_bytes: int = Field(
        default=64 * 1024, ge=4096, description="Piece size of bodies streamed from S3."
    )
    delivery_retry_after_seconds: int = Field(
        default=5,
        ge=1,
        description="Retry-After of a 404 for an asset whose renditions are still being made.",
    )
    delivery_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Delivery processes sharing its port (SO_REUSEPORT), each with its own "
        "caches; one answers on one core. Above 1, a supervisor runs them and sums their "
        "metrics.",
    )

    # Operations
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    shutdown_grace_seconds: float = Field(
        default=10.0, ge=0, description="Time in-flight work gets after SIGTERM."
    )
    health_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often dependencies are checked for health."
    )

    @field_validator("presets", mode="before")
    @classmethod
    def _parse_presets(cls, value: object) -> object:
        if isinstance(value, str):
            return _parse_preset_json(value)
        return value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_retry_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1:
            raise ValueError("IMAGEPIPE_RETRY_DELAYS must list at least one delay, each >= 1 s")
        return value

    @model_validator(mode="after")
    def _unique_presets(self) -> Settings:
        names = [p.name for p in self.presets]
        if len(set(names)) != len(names):
            raise ValueError(f"preset names must be unique, got {names}")
        return self

    @property
    def effective_render_concurrency(self) -> int:
        return self.render_concurrency or os.cpu_count() or 1

    @property
    def presign_endpoint(self) -> str:
        return self.s3_public_endpoint or self.s3_endpoint


def _parse_preset_json(text: str) -> list[Preset]:
    value = json.loads(text)
    if not isinstance(value, list):
        raise ValueError("IMAGEPIPE_PRESETS must be a JSON list of presets")
    return [Preset.model_validate(item) for item in value]


def load_settings() -> Settings:
    """Read the environment once; services call this in their entry point only."""
    return Settings()


def render_env_table() -> str:
    """The README's configuration table, generated from the fields above."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            shown = "*(secret)*" if default.get_secret_value() else "*(empty)*"
            if name in {"database_url", "amqp_url"}:
                shown = f"`{default.get_secret_value()}`"
        elif name == "presets":
            shown = "thumb 100², card 400², zoom 1200²"
        elif name == "retry_delays":
            shown = "`" + ",".join(str(d) for d in default) + "`"
        elif default in ("", None):
            shown = "*(empty)*"
        else:
            shown = f"`{default}`"
        rows.append(f"| `IMAGEPIPE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(render_env_table())
