"""The deployment artefacts agree with each other, with the settings and with the metrics.

docker-compose and kubectl render the files the way operators' tools will (no Docker
daemon or cluster needed); everything else is checked here. A missing docker-compose
(scripts/ensure-servers.sh installs it) or kubectl fails these tests, never skips them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.shared import healthcheck
from services.shared.broker import Topology
from services.shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
RENDER_FILE = DEPLOY / "render.yaml"
DASHBOARD_FILE = DEPLOY / "grafana" / "imagepipe.json"

# The gRPC services, and delivery, the one that speaks HTTP.
SERVICES = ("ingest", "catalog", "renderer", "quality")
HTTP_SERVICES = ("delivery",)
ALL_SERVICES = SERVICES + HTTP_SERVICES
GRPC_PORTS = {"ingest": 50051, "catalog": 50052, "renderer": 50053, "quality": 50054}
HTTP_PORTS = {"delivery": 8080}
METRICS_PORTS = {
    "ingest": 9101,
    "catalog": 9102,
    "renderer": 9103,
    "quality": 9104,
    "delivery": 9105,
}
# Where GetDeliveryUrl builds URLs (catalog) must be where delivery is reached.
PUBLIC_URL = "IMAGEPIPE_DELIVERY_PUBLIC_URL"
SETTING_NAMES = frozenset(f"IMAGEPIPE_{name.upper()}" for name in Settings.model_fields)
# Read by the platform, not by imagepipe: Render picks the port `hostport` resolves to.
PLATFORM_VARIABLES = frozenset({"PORT"})
METRICS = frozenset(
    {
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "imagepipe_render_seconds_bucket",
        "imagepipe_render_attempts_total",
        "imagepipe_render_retries_total",
        "imagepipe_poison_jobs_total",
        "imagepipe_queue_depth",
        "imagepipe_upload_bytes_total",
        "imagepipe_dedupe_hits_total",
        "imagepipe_uploads_total",
        "imagepipe_rendition_bytes_total",
    }
)
NAMESPACED_KINDS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
        "HorizontalPodAutoscaler",
    }
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed ({hint})", pytrace=False)
    return path


def _run(*args: str) -> str:
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=90, check=False)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` failed:\n{result.stderr}", pytrace=False)
    return result.stdout


# --- docker-compose ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it: anchors merged, defaults filled."""
    rendered = _run(
        _tool("docker-compose", "scripts/ensure-servers.sh installs it"),
        "-f",
        str(COMPOSE_FILE),
        "config",
    )
    services: dict[str, Any] = yaml.safe_load(rendered)["services"]
    return services


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _imagepipe(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services that run the imagepipe image, long-running or one-shot."""
    return {
        name: service
        for name, service in compose.items()
        if re.match(r"python -m services\.", " ".join(_command(service)))
    }


def _ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(published host port or "", container port), from compose v1 strings or v2 maps."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((str(port.get("published") or ""), int(port["target"])))
        else:
            *_, published, target = str(port).split("/")[0].split(":")
            ports.append((published, int(target)))
    return ports


def _is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def test_compose_runs_every_service_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    ours = _imagepipe(compose)
    assert {"postgres", "rabbitmq", "minio"} <= compose.keys()
    for name in ALL_SERVICES:
        assert _command(ours[name]) == ["python", "-m", f"services.{name}"]
    assert _command(ours["migrate"]) == ["python", "-m", "services.catalog", "migrate"]
    images = {service["image"] for service in ours.values()}
    assert len(images) == 1, f"one image for every service, got {images}"
    for name, service in ours.items():
        build = service["build"]
        assert Path(build["context"]).resolve() == REPO, name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name


def test_compose_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    ours = _imagepipe(compose)
    for name, service in compose.items():
        if name in ours and _is_one_shot(service):
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully"
                if _is_one_shot(compose[dependency])
                else "service_healthy"
            )
            assert condition["condition"] == expected, f"{name} -> {dependency}"
    for name in SERVICES:
        test = ours[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "services.shared.healthcheck", name]
    # delivery is HTTP: ready means /readyz answers 200 (test_delivery_healthcheck_…).
    test = ours["delivery"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{HTTP_PORTS['delivery']}/readyz" in test[3]
    assert {"catalog", "minio"} <= ours["delivery"]["depends_on"].keys()
    assert compose["catalog"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert compose["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert compose["rabbitmq"]["healthcheck"]["test"][1:] == ["rabbitmq-diagnostics", "-q", "ping"]
    assert compose["minio"]["healthcheck"]["test"][1:] == ["mc", "ready", "local"]


def test_compose_renderer_can_be_scaled(compose: dict[str, Any]) -> None:
    renderer = compose["renderer"]
    assert "container_name" not in renderer
    for published, target in _ports(renderer):
        assert not published, f"host port {published} for {target} stops --scale renderer=N"


def test_compose_exposes_grpc_http_and_metrics_ports(compose: dict[str, Any]) -> None:
    for name in ALL_SERVICES:
        targets = {target for _, target in _ports(compose[name])}
        port = GRPC_PORTS.get(name) or HTTP_PORTS[name]
        assert {port, METRICS_PORTS[name]} <= targets, name


def test_compose_catalog_signs_urls_where_delivery_is_published(compose: dict[str, Any]) -> None:
    public = compose["delivery"]["environment"][PUBLIC_URL]
    assert compose["catalog"]["environment"][PUBLIC_URL] == public
    published = {target: host for host, target in _ports(compose["delivery"])}
    assert public == f"http://localhost:{published[HTTP_PORTS['delivery']]}"
    assert "IMAGEPIPE_CATALOG_ADDR" in compose["delivery"]["environment"]


class _Ready(BaseHTTPRequestHandler):
    """/readyz answering the status the test sets."""

    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def test_delivery_healthcheck_passes_only_while_readyz_is_200(compose: dict[str, Any]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, python, *args = compose["delivery"]["healthcheck"]["test"]
    assert python == "python"
    port = f":{HTTP_PORTS['delivery']}/"

    def check(at: int) -> int:
        command = [sys.executable, *(a.replace(port, f":{at}/") for a in args)]
        return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode

    try:
        _Ready.status = 200
        assert check(server.server_port) == 0
        _Ready.status = 503
        assert check(server.server_port) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert check(server.server_port) != 0  # nothing listens


# --- Kubernetes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    rendered = _run(
        _tool("kubectl", "install kubectl: `kubectl kustomize` renders deploy/k8s"),
        "kustomize",
        str(DEPLOY / "k8s"),
    )
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def _pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def test_manifests_have_the_basic_schema(manifests: list[dict[str, Any]]) -> None:
    assert manifests
    for manifest in manifests:
        assert isinstance(manifest.get("apiVersion"), str) and manifest["apiVersion"], manifest
        assert isinstance(manifest.get("kind"), str) and manifest["kind"], manifest
        name = manifest.get("metadata", {}).get("name")
        assert isinstance(name, str) and DNS_LABEL.match(name), (manifest["kind"], name)
        if manifest["kind"] in NAMESPACED_KINDS:
            assert manifest["metadata"].get("namespace") == "imagepipe", name
    for name, pod in _pod_specs(manifests):
        assert pod["containers"], name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container.get("name") and container.get("image"), (name, container)
    for name, deployment in _of_kind(manifests, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name


def test_deployments_probe_health_and_bound_resources(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = _of_kind(manifests, "Deployment")
    assert set(ALL_SERVICES) <= deployments.keys()
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        for container in template["spec"]["containers"]:
            ports = {port["containerPort"] for port in container["ports"]}
            if name in HTTP_PORTS:
                # Ready while catalog and S3 answer; alive while the process serves.
                paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
                for probe, path in paths.items():
                    assert container[probe]["httpGet"]["path"] == path, (name, probe)
                    assert container[probe]["httpGet"]["port"] == HTTP_PORTS[name], name
                assert HTTP_PORTS[name] in ports, name
            else:
                for probe in ("livenessProbe", "readinessProbe"):
                    grpc_port = container[probe]["grpc"]["port"]
                    assert grpc_port in ports, (name, probe)
                    assert grpc_port == GRPC_PORTS.get(name, grpc_port), (name, probe)
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), (name, bound)
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS.get(name, "")), name


def test_every_compose_service_of_ours_has_a_deployment_or_job(
    compose: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    deployments = _of_kind(manifests, "Deployment")
    jobs = _of_kind(manifests, "Job")
    job_commands = [
        container.get("args", [])
        for job in jobs.values()
        for container in job["spec"]["template"]["spec"]["containers"]
    ]
    for name, service in _imagepipe(compose).items():
        if _is_one_shot(service):
            assert _command(service) in job_commands, f"no Job runs compose's {name}"
            continue
        assert name in deployments, f"compose service {name} has no Deployment"
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == _command(service), name


def test_renderer_is_scaled_by_keda_on_the_render_queue(manifests: list[dict[str, Any]]) -> None:
    (scaled,) = _of_kind(manifests, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "renderer"
    (trigger,) = scaled["spec"]["triggers"]
    (config,) = _of_kind(manifests, "ConfigMap").values()
    prefix = config["data"].get("IMAGEPIPE_AMQP_PREFIX", Settings().amqp_prefix)
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == Topology(prefix, delivery_limit=1).work_queue
    auth = _of_kind(manifests, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    (secret_ref,) = auth["spec"]["secretTargetRef"]
    assert secret_ref["key"] in _of_kind(manifests, "Secret")[secret_ref["name"]]["stringData"]
    # An HPA of our own beside KEDA's would fight it over the replica count.
    for hpa in _of_kind(manifests, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] != "renderer"
    assert "replicas" not in _of_kind(manifests, "Deployment")["renderer"]["spec"]


def test_k8s_delivery_gets_its_public_url_and_secrets(manifests: list[dict[str, Any]]) -> None:
    (config,) = _of_kind(manifests, "ConfigMap").values()
    assert config["data"][PUBLIC_URL].startswith("https://")
    (container,) = _of_kind(manifests, "Deployment")["delivery"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
        config["metadata"]["name"]
    ]
    secrets = {variable["name"] for variable in container["env"] if "valueFrom" in variable}
    assert {"IMAGEPIPE_INTERNAL_TOKEN", "IMAGEPIPE_S3_ACCESS_KEY", "IMAGEPIPE_S3_SECRET_KEY"} == (
        secrets
    )
    service = _of_kind(manifests, "Service")["delivery"]
    assert {port["port"] for port in service["spec"]["ports"]} == {8080, 9105}


def test_k8s_references_resolve(manifests: list[dict[str, Any]]) -> None:
    config_maps = _of_kind(manifests, "ConfigMap")
    secrets: dict[str, dict[str, str]] = {
        name: secret.get("stringData") or secret.get("data") or {}
        for name, secret in _of_kind(manifests, "Secret").items()
    }
    for name, pod in _pod_specs(manifests):
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    key_ref = ref["secretKeyRef"]
                    assert key_ref["key"] in secrets[key_ref["name"]], (name, key_ref)
                if "configMapKeyRef" in ref:
                    key_ref = ref["configMapKeyRef"]
                    assert key_ref["key"] in config_maps[key_ref["name"]]["data"], (name, key_ref)


# --- Render --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blueprint() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RENDER_FILE.read_text())
    return loaded


def _render_env(blueprint: dict[str, Any], service: dict[str, Any]) -> set[str]:
    groups = {group["name"]: group for group in blueprint.get("envVarGroups", [])}
    keys: set[str] = set()
    for variable in service.get("envVars", []):
        if "fromGroup" in variable:
            keys |= {v["key"] for v in groups[variable["fromGroup"]]["envVars"]}
        else:
            keys.add(variable["key"])
    return keys


def test_render_blueprint_runs_every_compose_service(
    compose: dict[str, Any], blueprint: dict[str, Any]
) -> None:
    services = {service["name"]: service for service in blueprint["services"]}
    databases = {database["name"] for database in blueprint.get("databases", [])}
    ours = _imagepipe(compose)
    pre_deploy = {service.get("preDeployCommand") for service in services.values()}
    for name, service in compose.items():
        if name in ours and _is_one_shot(service):
            # Render has no one-shot jobs: the catalog runs it before each deploy.
            assert " ".join(_command(service)) in pre_deploy, name
            continue
        assert f"imagepipe-{name}" in services.keys() | databases, f"render.yaml lacks {name}"
    for name in SERVICES:
        service = services[f"imagepipe-{name}"]
        assert service["type"] == "pserv" and service["runtime"] == "docker", name
        assert service["dockerfilePath"] == "./Dockerfile", name
        assert service["dockerCommand"] == " ".join(_command(ours[name])), name
    delivery = services["imagepipe-delivery"]
    # Public: browsers and CDNs fetch from it, over Render's HTTPS.
    assert delivery["type"] == "web" and delivery["runtime"] == "docker"
    assert delivery["dockerfilePath"] == "./Dockerfile"
    assert delivery["dockerCommand"] == " ".join(_command(ours["delivery"]))
    assert delivery["healthCheckPath"] == "/readyz"
    port = {v["key"]: v.get("value") for v in delivery["envVars"] if "key" in v}["PORT"]
    assert port == str(HTTP_PORTS["delivery"])
    for name in ("catalog", "delivery"):
        assert PUBLIC_URL in _render_env(blueprint, services[f"imagepipe-{name}"]), name
    renderer = services["imagepipe-renderer"]
    assert "numInstances" in renderer or "scaling" in renderer
    for name in ("rabbitmq", "minio"):
        assert services[f"imagepipe-{name}"]["runtime"] == "image", name


def test_render_sets_every_variable_compose_sets(
    compose: dict[str, Any], blueprint: dict[str, Any]
) -> None:
    services = {service["name"]: service for service in blueprint["services"]}
    for name in ALL_SERVICES:
        missing = set(compose[name]["environment"]) - _render_env(
            blueprint, services[f"imagepipe-{name}"]
        )
        assert not missing, f"render.yaml's imagepipe-{name} lacks {sorted(missing)}"


def test_render_references_resolve(blueprint: dict[str, Any]) -> None:
    services = {service["name"]: service for service in blueprint["services"]}
    databases = {database["name"] for database in blueprint.get("databases", [])}
    groups = {group["name"] for group in blueprint.get("envVarGroups", [])}
    for service in blueprint["services"]:
        for variable in service.get("envVars", []):
            if "fromGroup" in variable:
                assert variable["fromGroup"] in groups, variable
            if "fromDatabase" in variable:
                assert variable["fromDatabase"]["name"] in databases, variable
            if "fromService" in variable:
                target = services[variable["fromService"]["name"]]
                assert target["type"] == variable["fromService"]["type"], variable
                env_key = variable["fromService"].get("envVarKey")
                if env_key is not None:
                    assert env_key in _render_env(blueprint, target), variable


# --- the Dockerfile ------------------------------------------------------------------


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_installs_with_the_install_script_and_runs_unprivileged() -> None:
    instructions = _instructions((REPO / "Dockerfile").read_text())
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    # `make install` is scripts/install.sh too; the runtime stage calls it directly.
    assert any("scripts/install.sh" in run for run in runs)
    assert any("make proto" in run for run in runs)
    assert "scripts/install.sh" in (REPO / "Makefile").read_text()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [rest for keyword, rest in instructions[last_from:] if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    bases = [rest for keyword, rest in instructions if keyword in {"ARG", "FROM"}]
    assert any("python:3.11-slim" in base for base in bases), bases


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for keyword, rest in _instructions((REPO / "Dockerfile").read_text()):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            if source.startswith("--"):
                continue
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f".dockerignore keeps out {source}"


# --- settings names ------------------------------------------------------------------


def test_every_variable_given_to_imagepipe_is_a_setting(
    compose: dict[str, Any], manifests: list[dict[str, Any]], blueprint: dict[str, Any]
) -> None:
    used: dict[str, set[str]] = {}
    for name, service in _imagepipe(compose).items():
        used[f"compose {name}"] = set(service.get("environment", {}))
    # Host-side interpolation named like a setting must be one too: a typo there would
    # silently fall back to the development default.
    used["compose ${...}"] = set(re.findall(r"\$\{(IMAGEPIPE_\w+)", COMPOSE_FILE.read_text()))
    for name, pod in _pod_specs(manifests):
        for container in pod["containers"]:
            used[f"k8s {name}/{container['name']}"] = {
                variable["name"] for variable in container.get("env", [])
            }
    for kind in ("ConfigMap", "Secret"):
        for name, resource in _of_kind(manifests, kind).items():
            keys = resource.get("data") or resource.get("stringData") or {}
            used[f"k8s {kind} {name}"] = set(keys)
    for service in blueprint["services"]:
        if service["name"].removeprefix("imagepipe-") in ALL_SERVICES:
            used[f"render {service['name']}"] = _render_env(blueprint, service)
    for where, names in used.items():
        unknown = names - SETTING_NAMES - PLATFORM_VARIABLES
        assert not unknown, f"{where}: {sorted(unknown)} are not IMAGEPIPE_* settings"


# --- Grafana -------------------------------------------------------------------------

_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def _queries(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def metric_names(promql: str) -> set[str]:
    """Metric names a PromQL expression (or a label_values() query) selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', promql)  # label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        rest = text[match.end() :].lstrip()
        if not rest.startswith("(") and match.group() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    latency = (
        "histogram_quantile(0.95, sum by (le, grpc_method) (rate("
        'grpc_server_handling_seconds_bucket{grpc_service=~"$service"}[$__rate_interval])))'
    )
    assert metric_names(latency) == {"grpc_server_handling_seconds_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / clamp_min(sum(b_total), 1e-9)") == {
        "a_total",
        "b_total",
    }
    assert metric_names("label_values(grpc_server_handled_total, grpc_service)") == {
        "grpc_server_handled_total"
    }


def test_grafana_dashboard_queries_only_known_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    queried: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= METRICS, (panel["title"], names - METRICS)
            queried |= names
    for query in _queries(dashboard["templating"]):
        assert metric_names(query) <= METRICS, query
    assert queried == METRICS, f"no panel shows {sorted(METRICS - queried)}"
    titles = " | ".join(panel["title"].lower() for panel in panels)
    for topic in ("by code", "p95", "preset", "outcome", "poison", "queue", "upload", "dedupe"):
        assert topic in titles, topic


# --- the healthcheck command ---------------------------------------------------------


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def test_healthcheck_exits_zero_only_when_serving(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    argv = ["--host", "127.0.0.1", "--port", str(port), "--timeout", "5"]
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(argv) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main(argv) == 1
    assert healthcheck.main([*argv, "--grpc-service", "imagepipe.v1.Unknown"]) == 1


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert healthcheck.check("127.0.0.1:1", timeout=2) == "UNAVAILABLE"
    assert healthcheck.main(["--host", "127.0.0.1", "--port", "1", "--timeout", "2"]) == 1


def test_healthcheck_takes_the_port_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_BIND_HOST", "0.0.0.0")
    monkeypatch.setenv("IMAGEPIPE_RENDERER_PORT", "61053")
    assert healthcheck.resolve_target("renderer", None, None) == "127.0.0.1:61053"
    monkeypatch.delenv("IMAGEPIPE_CATALOG_PORT", raising=False)
    monkeypatch.setenv("IMAGEPIPE_BIND_HOST", "127.0.0.2")
    assert healthcheck.resolve_target("catalog", None, None) == "127.0.0.2:50052"
    assert healthcheck.resolve_target(None, 7, "::1") == "[::1]:7"
