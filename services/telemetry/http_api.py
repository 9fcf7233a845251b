"""HTTP adapter: `GET /run-summary` and `GET /admin/system-health` (aiohttp routes)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from services.runtime.errors import InvalidInput
from services.runtime.keys import key_from_headers, scoped_tenant
from services.telemetry.app import Telemetry
from services.telemetry.auth import Operation, TelemetryAccess
from services.telemetry.domain.events import parse_tenant_filter
from services.telemetry.domain.window import TimeWindow, parse_instant, resolve_window
from services.telemetry.errors import domain_errors

_WINDOW_PARAMS = frozenset({"since", "until", "tenant_id"})


def query_params(request: web.Request, allowed: frozenset[str]) -> Mapping[str, str]:
    """Single-valued query parameters; unknown or repeated ones are a 400, not ignored."""
    params: dict[str, str] = {}
    for key in request.query:
        if key not in allowed:
            raise InvalidInput(
                "UNKNOWN_PARAMETER",
                f"unknown query parameter {key!r}; allowed: {', '.join(sorted(allowed))}",
                field=key,
            )
        values = request.query.getall(key)
        if len(values) > 1:
            raise InvalidInput("REPEATED_PARAMETER", f"{key} given more than once", field=key)
        params[key] = values[0]
    return params


class TelemetryRoutes:
    """Route handlers bound to one `Telemetry`."""

    def __init__(self, telemetry: Telemetry, access: TelemetryAccess) -> None:
        self._telemetry = telemetry
        self._access = access

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/run-summary", self.run_summary),
            web.get("/admin/system-health", self.system_health),
        ]

    async def _window_and_tenant(
        self, request: web.Request, operation: Operation
    ) -> tuple[TimeWindow, str | None]:
        """The query's window and the tenant filter the caller's key allows.

        The key is checked before any parameter is read."""
        caller = await self._access.authorize(operation, key_from_headers(request.headers))
        params = query_params(request, _WINDOW_PARAMS)
        now = self._telemetry.now()
        with domain_errors():
            since, until = (
                parse_instant(params[name], now=now, field=name) if params.get(name) else None
                for name in ("since", "until")
            )
            window = resolve_window(since, until, now=now)
            tenant = parse_tenant_filter(params.get("tenant_id"))
        return window, scoped_tenant(caller, tenant)

    async def run_summary(self, request: web.Request) -> web.Response:
        """`GET /run-summary?since=&until=&tenant_id=`: docs/seeds/002.txt §6.1 document."""
        window, tenant = await self._window_and_tenant(request, Operation.RUN_SUMMARY)
        summary = await self._telemetry.run_summary(window, tenant)
        return web.json_response(summary.to_json())

    async def system_health(self, request: web.Request) -> web.Response:
        """`GET /admin/system-health?tenant_id=&since=&until=`."""
        window, tenant = await self._window_and_tenant(request, Operation.SYSTEM_HEALTH)
        report = await self._telemetry.system_health(window, tenant)
        return web.json_response(report.to_json())
