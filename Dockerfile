# syntax=docker/dockerfile:1.7
# One image for the imagepipe services; the command picks what runs:
#
#   docker run IMAGE python -m services.ingest        (catalog, renderer, quality, delivery alike)
#   docker run IMAGE python -m services.catalog migrate
#
# Built with the same scripts/install.sh and `make proto` as a developer's checkout, so
# the image runs exactly the dependency set pinned in constraints.txt. Configuration is
# the IMAGEPIPE_* environment (README.md, "Configuration").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app


# Generated gRPC code. Needs the dev extras (grpcio-tools, mypy-protobuf), which stay
# in this stage: the runtime image gets only the generated modules.
FROM base AS proto
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md Makefile ./
COPY scripts/install.sh scripts/
COPY packages/ packages/
RUN --mount=type=cache,target=/root/.cache/pip make install
COPY protos/ protos/
RUN make proto


# The runtime virtualenv: dependencies without the dev extras.
FROM base AS venv
COPY pyproject.toml constraints.txt README.md ./
COPY scripts/install.sh scripts/
# The contract and client projects (their editable installs are a path entry to /app).
COPY packages/ packages/
# Dependencies first, in a layer of their own: source edits do not reinstall them.
RUN --mount=type=cache,target=/root/.cache/pip bash scripts/install.sh --no-dev
COPY imagepipe/ imagepipe/
COPY services/ services/
COPY --from=proto /app/imagepipe/v1/ imagepipe/v1/
# Again with the services present, so their editable install maps them (imports from
# any working directory rely on that).
RUN --mount=type=cache,target=/root/.cache/pip bash scripts/install.sh --no-dev \
    && .venv/bin/python -m compileall -q imagepipe services


FROM base AS runtime
LABEL org.opencontainers.image.title="imagepipe" \
      org.opencontainers.image.description="Image-asset pipeline as gRPC microservices: ingest, catalog, renderer, quality; delivery over HTTP." \
      org.opencontainers.image.licenses="Apache-2.0"
# tini as PID 1 forwards SIGTERM to the service (which drains gracefully) and reaps the
# decoder worker processes the services spawn.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 imagepipe \
    && useradd --system --uid 10001 --gid imagepipe --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin imagepipe
# Root-owned and read-only to the service user.
COPY --from=venv /app /app
ENV PATH=/app/.venv/bin:$PATH \
    IMAGEPIPE_BIND_HOST=0.0.0.0
# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001
# gRPC 50051-50054 and Prometheus 9101-9104 (ingest, catalog, renderer, quality); delivery's
# HTTP 8080 and its Prometheus 9105.
EXPOSE 50051 50052 50053 50054 9101 9102 9103 9104 8080 9105
# No HEALTHCHECK: the port depends on the service; orchestrators run
# `python -m services.shared.healthcheck <service>` or a native gRPC probe (delivery:
# GET /healthz and /readyz).
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "services.catalog"]
