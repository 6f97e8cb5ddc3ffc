"""The delivery service without an HTTP framework: `DeliveryCore.handle(request) -> Reply`.

Routes: GET and HEAD of `/v1/...` (imagepipe.delivery's URL scheme), `/healthz` (the
process runs) and `/readyz` (catalog and S3 answer); any other method is 405. Domain
errors become JSON replies here, in one place, with the status and caching each calls for.
"""

from __future__ import annotations

from imagepipe.delivery import DeliveryPath, parse_path, parse_query
from services.delivery.ports import Readiness
from services.delivery.reply import Reply, Request, Route, error_reply, json_reply
from services.delivery.usecases import RETRY_AFTER, DeliveryPolicy, RenditionService
from services.shared.errors import (
    DeadlineExceeded,
    ImagepipeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.shared.logs import get_logger, request_id_var

__all__ = ["COMMON_HEADERS", "DeliveryCore", "route_of"]

log = get_logger(__name__)

# On every reply: images may be drawn and timed by pages of any origin, and never
# sniffed into another type; the server names itself, not its framework's version.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Access-Control-Allow-Origin": "*",
    "Timing-Allow-Origin": "*",
    "Server": "imagepipe",
}
ALLOWED_METHODS = ("GET", "HEAD")
HEALTH_PATHS = ("/healthz", "/readyz")
# Short, so a re-render or an upload shows up soon; never longer than the lookup TTL.
NOT_FOUND_MAX_AGE = 5
DEPENDENCY_RETRY_SECONDS = 1

# The shared error tree as HTTP. Anything else a dependency answers (refused credentials,
# a misconfigured bucket) is the upstream's failure, not the client's: 502.
_HTTP_STATUS: tuple[tuple[type[ImagepipeError], int], ...] = (
    (InvalidArgument, 400),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Unavailable, 503),
    (DeadlineExceeded, 503),
)


def route_of(path: str) -> Route:
    """The route label of a path, for metrics (a bounded set, whatever was asked)."""
    return _route(path, parse_path(path))


def _route(path: str, target: DeliveryPath | None) -> Route:
    if path in HEALTH_PATHS:
        return "health"
    if target is None:
        return "other"
    return "negotiated" if target.format is None else "format"


class DeliveryCore:
    def __init__(
        self, renditions: RenditionService, readiness: Readiness, policy: DeliveryPolicy
    ) -> None:
        self._renditions = renditions
        self._readiness = readiness
        self._policy = policy

    async def handle(self, request: Request) -> Reply:
        """The reply to one request; never raises for anything a client sends."""
        target = parse_path(request.path)
        try:
            reply = await self._dispatch(request, target)
        except ImagepipeError as error:
            reply = self.error_reply(error)
        except Exception:
            # A bug: logged with its traceback; the client gets an id to quote.
            log.exception("unhandled error serving %s", request.path)
            reply = error_reply(
                500,
                "INTERNAL",
                f"internal error; quote request id {request_id_var.get()} when reporting",
                {"Cache-Control": "no-store"},
            )
        reply.route = _route(request.path, target)
        if reply.route == "negotiated" and reply.status not in (400, 403):
            # Caches must key negotiated replies (404s and redirects too) by Accept.
            reply.headers["Vary"] = "Accept"
        reply.headers.update(COMMON_HEADERS)
        if request.method == "HEAD":
            reply.body = None
        return reply

    async def _dispatch(self, request: Request, target: DeliveryPath | None) -> Reply:
        if request.method not in ALLOWED_METHODS:
            return error_reply(
                405,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not served here; use GET or HEAD",
                {"Allow": ", ".join(ALLOWED_METHODS), "Cache-Control": "no-store"},
            )
        if request.path in HEALTH_PATHS:
            return self._health(request.path)
        if target is None:
            raise NotFound(
                "not a delivery URL: /v1/<tenant id>/<asset id>/<preset>[.jpg|.webp|.avif]",
                reason="NOT_A_DELIVERY_URL",
            )
        query = parse_query(request.query)
        if query is None:
            raise InvalidArgument(
                "malformed v, e, k or s: v and k are 16 hex digits, e a Unix time in "
                "seconds, s 43 base64url characters",
                reason="BAD_PARAMETER",
            )
        return await self._renditions.serve(request, target, query)

    def _health(self, path: str) -> Reply:
        no_store = {"Cache-Control": "no-store"}
        if path == "/healthz" or self._readiness.ready:
            return json_reply(200, {"status": "ok"}, no_store)
        return error_reply(
            503,
            "NOT_READY",
            "the catalog or the object store does not answer, or the service is stopping",
            no_store,
        )

    def error_reply(self, error: ImagepipeError) -> Reply:
        """A domain error as HTTP: its status, reason and message, and how long it may
        be cached (404s briefly, the rest not at all)."""
        status = next((code for kind, code in _HTTP_STATUS if isinstance(error, kind)), 502)
        headers = {"Cache-Control": "no-store"}
        if RETRY_AFTER in error.metadata:
            headers["Retry-After"] = error.metadata[RETRY_AFTER]
        elif status == 404:
            max_age = min(NOT_FOUND_MAX_AGE, int(self._policy.lookup_ttl_seconds))
            headers["Cache-Control"] = f"public, max-age={max_age}"
        if status == 503:
            headers["Retry-After"] = str(DEPENDENCY_RETRY_SECONDS)
        if status >= 500:
            log.warning("dependency failed: %s", error.message, extra={"reason": error.reason})
        return error_reply(status, error.reason, error.message, headers)
