"""ASGI middleware in front of every Gateway route, HTTP and WebSocket alike:

- a `Host` outside the allow-list gets 421 (DNS rebinding: a foreign page on a name that
  resolves to us sends its own Host);
- `/admin/*` needs `Authorization: Bearer <VOICE_ADMIN_TOKEN>`: 401 when missing or wrong,
  404 when no token is configured (the routes are off). The token is a SecretStr: it is
  never formatted into a log line or a response.

Refusals happen before the app sees the request; a WebSocket is refused with a real HTTP
response (the ASGI denial-response extension), before any accept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from serve_app.admission import bearer_ok, default_hosts, host_allowed

log = logging.getLogger(__name__)


async def deny(scope, receive, send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer with an HTTP status; on a WebSocket handshake too when the server can."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": detail})  # the server answers 403
        return
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


class Guard:
    def __init__(self, app, settings: Callable):
        self.app = app
        self._settings = settings  # read at the first request: the replica's settings, not the importer's

    def _hosts(self, s) -> frozenset[str]:
        hosts = frozenset(s.allowed_hosts) if s.allowed_hosts else default_hosts(s.http_port)
        if s.public_url:  # the name carriers reach us at (phone calls) is ours too
            hosts |= {urlsplit(s.public_url).netloc.lower()}
        return hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        s = self._settings()
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host"), self._hosts(s)):
            log.info("refused a request for an unknown host (%s %s)", scope["type"], scope.get("path", "")[:40])
            return await deny(scope, receive, send, 421, "unknown host")
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == "/admin" or path.startswith("/admin/"):
            token = s.admin_token.get_secret_value() if s.admin_token is not None else ""
            if not token:
                return await deny(scope, receive, send, 404, "Not Found")
            if not bearer_ok(headers.get("authorization"), token):
                log.info("refused an admin request without a valid token (%s)", path[:40])
                return await deny(scope, receive, send, 401, "admin token required", {"WWW-Authenticate": "Bearer"})
        await self.app(scope, receive, send)
