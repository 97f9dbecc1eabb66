"""``GET /readyz`` and ``GET /metrics``: for the load balancer and the monitoring system.

``/readyz`` answers everyone, with ``ready`` or ``not ready`` and a short,
content-free reason (``api.readiness``). ``/metrics`` answers only the
addresses of ``VAULT_METRICS_ALLOW`` (loopback by default): request rates by
route, policy refusals, login failures and grant counts show how the vault is
used, which is not for anyone who can reach the port. To any other address it
is a 404, like a path that does not exist.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import ServicesDep, client_address
from api.metrics import render
from api.readiness import Readiness

router = APIRouter(tags=["health"])


@router.get("/readyz")
async def readyz(request: Request, services: ServicesDep) -> Any:
    readiness: Readiness = request.app.state.readiness
    reason = await run_in_threadpool(readiness.check, services)
    if reason is not None:
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return {"status": "ready"}


def may_read_metrics(request: Request, services: ServicesDep) -> bool:
    address = client_address(request)
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
    return any(ip in net for net in services.vault.settings.metrics_networks)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, services: ServicesDep) -> Response:
    if not may_read_metrics(request, services):
        raise StarletteHTTPException(404)
    return Response(render(services.engine, services.clock), media_type=CONTENT_TYPE_LATEST)
