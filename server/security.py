"""The edge guards, as one pure ASGI middleware (HTTP and websocket alike).

In order: the ``Host`` header must be exactly host[:port] and name this server (DNS
rebinding; a wildcard bind accepts any well-formed name); a token, when
set, must come with every API and websocket request (``Authorization: Bearer T`` or
``?token=T``; compared with ``hmac.compare_digest``); a websocket's ``Origin``, and
an unsafe HTTP method's ``Origin``, must be this server's own origin (cross-site
requests); a body must fit the size limit (413, checked while reading, never
buffered past it), a JSON body must not nest deeper than ``max_json_depth``
(a 100,000-level body would otherwise exhaust the parser's recursion), and one the
parser refuses for other reasons than syntax (not UTF-8, a number of thousands of
digits) is named, with ``loc`` [] for the body as a whole.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import sys
from urllib.parse import parse_qs, urlsplit

from .errors import error_body
from .settings import Settings

log = logging.getLogger("backprop_lab.security")

UPLOAD_PATH = re.compile(r"^/api/runs/[^/]+/weights$")
OPEN_PATHS = ("/", "/docs", "/redoc", "/openapi.json", "/favicon.ico", "/docs/oauth2-redirect")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_RE = re.compile(r"(token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Logging filter: ``token=...`` in any log line becomes ``token=***``.

    The redaction is applied to the message and to each argument, never by formatting the
    line early: formatters may read ``record.args`` themselves (uvicorn's access formatter
    unpacks its five), so the arguments keep their number and their types."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, str) and "token=" in record.msg:
                record.msg = redact(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_redact_arg(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        except Exception:  # noqa: BLE001 - never break logging
            pass
        return True


def redact(text: str) -> str:
    return TOKEN_RE.sub(r"\1***", text)


def _redact_arg(a):
    """A string argument redacted; any other argument whose text holds a token becomes its
    redacted text (numbers, which formatters may compute with, hold no token)."""
    if isinstance(a, (int, float)):
        return a
    if isinstance(a, str):
        return redact(a) if "token=" in a else a
    text = str(a)
    return redact(text) if "token=" in text else a


def json_depth_exceeds(obj, limit: int) -> bool:
    """True if ``obj`` nests lists/dicts deeper than ``limit`` (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = o.values()
        elif not isinstance(o, list):
            continue
        if d > limit:
            return True
        stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return False


# host [":" port]: a DNS name or IPv4 address, or an IPv6 address in brackets; a numeric port.
HOST_RE = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?))"
                     r"(?::(?P<port>[0-9]{1,5}))?")


def host_name(host_header: str) -> str | None:
    """``example.com:8000`` -> ``example.com``; ``[::1]:80`` -> ``::1``; ``None`` when the
    header is not exactly host[:port] (``localhost:1@evil.example``, ``localhost:http``,
    an unbracketed IPv6 address, a port above 65535): such a header names no host at all."""
    m = HOST_RE.fullmatch(host_header.strip().lower())
    if not m or (m["port"] is not None and int(m["port"]) > 65535):
        return None
    if m["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(m["v6"]))
        except ValueError:
            return None
    return m["name"]


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON: none given,
    ``application/json`` or ``application/*+json`` (fastapi.routing)."""
    main = (content_type or "").split(";")[0].strip().lower()
    return not main or main == "application/json" or (
        main.startswith("application/") and main.endswith("+json"))


class Reject(Exception):
    def __init__(self, status: int, loc: list, msg: str):
        self.status, self.loc, self.msg = status, loc, msg


class GuardMiddleware:
    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        self.hosts = settings.allowed_host_names()
        self._names = {host_name(h if ":" not in h or h.startswith("[") else f"[{h}]") or h
                       for h in self.hosts}         # as host_name() answers: IPv6 unbracketed

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        try:
            self._check_host(headers)
            self._check_token(scope, headers)
            self._check_origin(scope, headers)
            if kind == "http" and scope["method"] in UNSAFE:
                receive = await self._limited_body(scope, headers, receive)
        except Reject as r:
            return await self._reject(scope, receive, send, r)
        return await self.app(scope, receive, send)

    # ------------------------------------------------------------ checks

    def _check_host(self, headers: dict) -> None:
        host = headers.get("host")
        if host is None and self.settings.any_host:
            return        # HTTP/1.0 without a Host: nothing to misread on a wildcard bind
        host = host or ""
        name = host_name(host)
        if name is None:
            raise Reject(400, ["header", "host"],
                         f"Host {host[:100]!r} is not a host name with an optional numeric port")
        if self.settings.any_host:
            return
        if name not in self._names:
            raise Reject(400, ["header", "host"],
                         f"Host {host[:100]!r} is not allowed: this server answers to "
                         f"{', '.join(sorted(self.hosts))}")

    def _check_token(self, scope, headers: dict) -> None:
        token = self.settings.token
        if not token:
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and (
                path in OPEN_PATHS or path.startswith("/static/")):
            return
        given = ""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        else:
            qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (qs.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
            raise Reject(401, ["header", "authorization"],
                         "a valid token is required: send `Authorization: Bearer <token>` or "
                         "`?token=<token>` (the token is printed when the server starts)"
                         if not given else "the token is not valid")

    def _check_origin(self, scope, headers: dict) -> None:
        origin = headers.get("origin")
        if origin is None:
            return        # not a browser (browsers always send it on websockets and CORS)
        if scope["type"] == "http" and scope["method"] not in UNSAFE:
            return
        parts = urlsplit(origin)
        host = headers.get("host", "").lower()
        if parts.scheme in ("http", "https") and parts.netloc.lower() == host:
            return
        raise Reject(403, ["header", "origin"],
                     f"Origin {origin[:100]!r} is not this server's origin; cross-site "
                     "requests are refused")

    async def _limited_body(self, scope, headers: dict, receive):
        upload = bool(UPLOAD_PATH.match(scope.get("path", "")))
        limit = self.settings.max_upload_bytes if upload else self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Reject(400, ["header", "content-length"], "Content-Length is not a number")
            if int(declared) > limit:
                raise Reject(413, ["body"], f"the body is {int(declared):,} bytes; the limit is "
                                            f"{limit:,} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Reject(413, ["body"], f"the body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not upload:
            self._check_json(body, is_json(headers.get("content-type")))
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return replay

    def _check_json(self, body: bytes, as_json: bool) -> None:
        """What the JSON parser refuses beyond syntax, named, when FastAPI would parse the
        body as JSON (``as_json``; it would answer a bare 400 "There was an error parsing the
        body"); malformed JSON is left to FastAPI, which gives its position. NaN and Infinity
        parse, and the engine's rules name their field. The depth limit holds for any body."""
        limit = self.settings.max_json_depth
        try:
            obj = json.loads(body)
        except RecursionError:
            raise Reject(422, ["body"], f"the JSON body nests too deeply (the limit is "
                                        f"{limit} levels)") from None
        except UnicodeDecodeError as e:
            if not as_json:
                return
            raise Reject(422, ["body"], f"the body is not UTF-8 text (byte "
                                        f"0x{e.object[e.start]:02x} at offset {e.start}); "
                                        "send JSON encoded as UTF-8") from None
        except json.JSONDecodeError:
            return        # malformed: FastAPI reports it with its position
        except ValueError as e:
            if not as_json:
                return
            if "digits" in str(e):      # int() refuses more than sys.get_int_max_str_digits()
                raise Reject(422, ["body"], f"a number in the body has too many digits (more "
                                            f"than {sys.get_int_max_str_digits():,})") from None
            raise Reject(422, ["body"], f"the body could not be read as JSON: {e}") from None
        if json_depth_exceeds(obj, limit):
            raise Reject(422, ["body"], f"the JSON body nests more than {limit} levels deep")

    # ------------------------------------------------------------ answers

    async def _reject(self, scope, receive, send, r: Reject):
        body = json.dumps(error_body([{"loc": r.loc, "msg": r.msg}])).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if r.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": r.status,
                            "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:  # pragma: no cover - servers without the extension answer 403
                await send({"type": "websocket.close", "code": 1008})
            return
        if r.status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": r.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
