"""Who may ask: the access token, and the headers every answer carries.

With a token (`--token`, or one generated for a non-loopback `--host`), every request but the static files
and the bare `/` redirect must carry it, as the query parameter `token` or the header `X-Token`; anything else
gets 401 with a one-line JSON error. The comparison takes the same time whatever the guess
(`secrets.compare_digest`). Every answer says: do not sniff types, do not send the address (which may carry the
token) as a referrer to another site, do not show this server's pages inside another site's frame.
"""
from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

TOKEN_PARAM, TOKEN_HEADER = "token", "x-token"
OPEN_PATHS = ("/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY")]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """(the token the server will ask for, whether it was generated): the given one; else, for an address other
    machines can reach, a new random one (printed once at start-up); else none."""
    from perceptions.errors import PerceptionsError

    if token is not None:
        if not token.strip() or token != token.strip():
            raise PerceptionsError("--token must not be empty or start or end with spaces")
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


class Guard:
    """ASGI middleware: the token check (when `token` is set) and the security headers."""

    def __init__(self, app, token: str | None = None):
        self.app, self.token = app, token or None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.token and self._guarded(scope["path"]) and not token_matches(self._given(scope), self.token):
            response = JSONResponse({"error": "missing or wrong access token: add ?token=... (or the X-Token "
                                              "header) as printed when the server started"}, status_code=401)
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _guarded(path: str) -> bool:
        return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)

    @staticmethod
    def _given(scope) -> str | None:
        for name, value in scope.get("headers", []):
            if name == TOKEN_HEADER.encode():
                return value.decode("latin-1")
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_PARAM)
        return values[0] if values else None
