"""One error shape for every 4xx: ``{"detail": [{"loc": [...], "msg": "..."}]}``.

``msg`` names the field, the value and the rule, so a form can show it as is.

``loc`` has one style on every endpoint (the engine's, which the page shows next to its
fields): the path to the bad value inside the JSON body, ``["train", "lr"]`` or
``["model", 2, "units"]``, and ``[]`` for the body as a whole (malformed JSON, too large,
empty). Query and path parameters keep their prefix: ``["query", "count"]``,
``["path", "run_id"]``. Code may raise with FastAPI's ``["body", ...]`` locations;
``error_body`` drops that prefix, so every answer (HTTP handlers, the guard middleware,
websocket refusals) goes through one place.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .manager import InvalidChanges, RunConflict, RunError, RunNotFound, StorageUnavailable


class ApiError(Exception):
    """Raise from anywhere in a request: becomes ``status`` with one or more errors."""

    def __init__(self, status: int, loc: list | None = None, msg: str = "",
                 errors: list[dict] | None = None, headers: dict | None = None):
        self.status = status
        self.errors = errors if errors is not None else [{"loc": loc or [], "msg": msg}]
        self.headers = headers
        super().__init__("; ".join(e["msg"] for e in self.errors))


def short(v: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: an error never echoes a megabyte back."""
    try:
        s = repr(v)
    except RecursionError:  # pragma: no cover - depth is bounded at the edge
        s = "<deeply nested value>"
    return s if len(s) <= limit else s[:limit - 3] + "..."


def wire_loc(loc) -> list:
    """``loc`` as answered: without FastAPI's leading ``"body"``."""
    loc = list(loc or [])
    return loc[1:] if loc[:1] == ["body"] else loc


def error_body(errors: list[dict]) -> dict:
    return {"detail": [{"loc": wire_loc(e.get("loc")), "msg": str(e.get("msg", ""))}
                       for e in errors]}


def error_response(status: int, errors: list[dict], headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(errors), status_code=status, headers=headers)


#: the run lifecycle's errors (server/manager.py) over HTTP: status and where the problem is
RUN_ERRORS: dict[type, tuple[int, list]] = {
    RunNotFound: (404, ["path", "run_id"]),
    RunConflict: (409, ["path", "run_id"]),
    StorageUnavailable: (503, ["data_dir"]),
    InvalidChanges: (422, []),          # each error's loc is inside the PATCH body
}


def run_error(exc: RunError) -> tuple[int, list[dict]]:
    status, loc = next(v for cls, v in RUN_ERRORS.items() if isinstance(exc, cls))
    if isinstance(exc, InvalidChanges):
        return status, [{"loc": loc + e["loc"], "msg": e["msg"]} for e in exc.errors]
    return status, [{"loc": loc, "msg": str(exc)}]


def _pydantic_msg(err: dict) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or "body"
    msg = err.get("msg", "invalid")
    if err.get("type") == "json_invalid":
        return f"body is not valid JSON ({err.get('ctx', {}).get('error', msg)})"
    if err.get("type") == "missing":
        return f"{field} is required"
    out = f"{field}: {msg[0].lower() + msg[1:] if msg else msg}"
    if "input" in err and err.get("type") not in ("extra_forbidden", "missing"):
        out += f", got {short(err['input'])}"
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.errors, exc.headers)

    @app.exception_handler(RunError)
    async def _run_error(request: Request, exc: RunError):
        return error_response(*run_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [{"loc": [] if e.get("type") == "json_invalid" else list(e.get("loc", ())),
                   "msg": _pydantic_msg(e)} for e in exc.errors()]
        return error_response(422, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if not isinstance(detail, list):
            detail = [{"loc": [], "msg": str(detail)}]
        return error_response(exc.status_code, detail, getattr(exc, "headers", None))
