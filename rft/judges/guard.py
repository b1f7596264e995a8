"""What keeps ``rft serve-graders`` safe on a network: the bearer token and the request limits.

- **Token**: from ``--token-file`` or ``$RFT_GRADER_TOKEN`` (:func:`resolve_token`). It is
  required whenever the server binds beyond loopback (:func:`check_bind` refuses to start
  otherwise); with a token set, every request needs ``Authorization: Bearer <token>``,
  compared in constant time, or it is answered 401.
- **Size**: a body over ``max_body_bytes`` is answered 413 before the server reads it
  (by its ``Content-Length``) or as soon as it has read that much (a chunked body).

:class:`RequestGuard` is plain ASGI middleware, so both checks happen before FastAPI
parses anything. The per-request sample limit needs the parsed body and lives in
:mod:`rft.judges.server`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from rft.core.errors import ConfigError
from rft.judges.settings import GRADER_TOKEN_ENV

logger = logging.getLogger(__name__)

__all__ = ["RequestGuard", "check_bind", "is_loopback", "resolve_token"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def resolve_token(token_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The server's bearer token: the first line of ``token_file``, else ``$RFT_GRADER_TOKEN``, else None.

    Raises:
        ConfigError: ``token_file`` cannot be read or holds no token.

    >>> resolve_token(environ={"RFT_GRADER_TOKEN": " s3cret\\n"})
    's3cret'
    >>> resolve_token(environ={}) is None
    True
    """
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(
                f"cannot read the token file: {err.strerror}; give a readable file with the token on its first line",
                file=str(token_file),
            ) from err
        lines = text.strip().splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise ConfigError("the token file is empty; write the token on its first line", file=str(token_file))
        return token
    token = env.get(GRADER_TOKEN_ENV, "").strip()
    return token or None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.5", "grading-box")]
    [True, True, True, False, False, False]
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``token`` is None.
    """
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve graders on {host} without a token: any machine that can reach it could "
            f"run them. Set ${GRADER_TOKEN_ENV} or give --token-file FILE (and the same token to the `remote` "
            "grader: `token:` or the same variable), or bind --host 127.0.0.1 to serve this machine only"
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: the bearer token (401) and the body size limit (413), before any work.

    Args:
        app: the application behind it.
        token: the expected bearer token; None lets every request through (loopback only,
            see :func:`check_bind`).
        max_body_bytes: the largest request body accepted.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int):
        if max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive number of bytes, got {max_body_bytes}")
        self.app = app
        self._token = token.encode() if token is not None else None
        self.max_body_bytes = max_body_bytes

    def authorized(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header carries the token (constant-time comparison).

        >>> g = RequestGuard(None, token="s3cret", max_body_bytes=10)
        >>> g.authorized(b"Bearer s3cret"), g.authorized(b"Bearer guess"), g.authorized(None)
        (True, False, False)
        """
        if self._token is None:
            return True
        scheme, _, given = (header or b"").partition(b" ")
        # compare even when the scheme is wrong, so the time taken says nothing about the token
        match = hmac.compare_digest(given.strip(), self._token)
        return scheme.lower() == b"bearer" and match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.authorized(_header(scope, b"authorization")):
            logger.warning(
                "refused %s %s from %s: missing or wrong token", scope["method"], scope["path"], scope.get("client")
            )
            await _reply(
                send,
                401,
                "missing or wrong bearer token: send `Authorization: Bearer <token>` with the server's token "
                f"(the `remote` grader sends its `token:` setting, else ${GRADER_TOKEN_ENV})",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _reply(send, 400, f"invalid Content-Length {length.decode(errors='replace')!r}")
                return
            if size > self.max_body_bytes:
                await self._too_large(send, f"{size} bytes")
                return
            await self.app(scope, receive, send)  # the HTTP server delivers no more than Content-Length
            return
        # no Content-Length (a chunked body): read it here, up to the limit, then hand it on
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send, f"more than {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: str) -> None:
        await _reply(
            send,
            413,
            f"request body of {size} is over this server's limit of {self.max_body_bytes} bytes "
            "(rft serve-graders --max-body-bytes); send fewer samples per request (the `remote` grader's "
            "`batch_size`) or raise the limit",
        )
