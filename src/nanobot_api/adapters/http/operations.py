"""The routes an operator's tools call: ``/health/live``, ``/health/ready``, ``/metrics``.

The health routes never need a key (a load balancer's probe has none) and say nothing
private; ``/metrics`` follows the key rules like every other route.
"""

from __future__ import annotations

import attrs
from quart import Quart, Response

from nanobot_api.adapters.http.answers import json_bytes
from nanobot_api.adapters.http.pipeline.authentication import ApiKey, Network
from nanobot_api.adapters.observability.metrics import CONTENT_TYPE, Metrics
from nanobot_api.domain.ports import IdempotencyStore, RequestLimiter, ServerHealth


@attrs.frozen
class Operations:
    """What the operations routes report from, and what the operations stages of the
    pipeline enforce: named keys (tenants), limits, Idempotency-Key records."""

    health: ServerHealth
    metrics: Metrics | None = None
    keys: tuple[ApiKey, ...] = ()
    limiter: RequestLimiter | None = None
    idempotency: IdempotencyStore | None = None
    trusted_proxies: tuple[Network, ...] = ()
    idempotency_ttl_s: float = 24 * 3600.0
    # How long a first request's claim on its Idempotency-Key holds if its worker dies.
    turn_lease_s: float = 180.0
    # With a store that renews claims (IdempotencyLeases): the claim's lease instead,
    # renewed every third of it while the first request runs.
    renewed_lease_s: float = 30.0


class NoHealth:
    """The health of an app built without its server's parts: never draining, no checks."""

    draining = False

    async def readiness(self) -> dict[str, str]:
        return {}

    def degraded(self) -> dict[str, str]:
        return {}


def install_operations_routes(app: Quart, operations: Operations) -> None:
    health = operations.health

    @app.get("/health/live")
    async def live() -> Response:
        if health.draining:
            return _json({"status": "draining"}, 503)
        return _json({"status": "ok"})

    @app.get("/health/ready")
    async def ready() -> Response:
        checks = await health.readiness()
        if health.draining:
            return _json({"status": "draining", "checks": checks}, 503)
        if any(state != "ok" for state in checks.values()):
            return _json({"status": "unavailable", "checks": checks}, 503)
        degraded = health.degraded()
        if degraded:
            # Still 200: the API serves (without those parts), so keep the replica.
            return _json({"status": "degraded", "checks": checks, "degraded": degraded})
        return _json({"status": "ready", "checks": checks})

    metrics = operations.metrics
    if metrics is not None:
        scraped = metrics  # narrowed, for the closure

        @app.get("/metrics")
        async def scrape() -> Response:
            return Response(await scraped.render(), 200, content_type=CONTENT_TYPE)


def _json(payload: object, status: int = 200) -> Response:
    response = Response(json_bytes(payload), status, content_type="application/json")
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response
