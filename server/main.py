"""The app: ``create_app(settings)`` wires the store, the workers, the routes and the guards.

Workers are started from the lifespan, never at import, so importing this module
(or the OpenAPI generator) starts nothing.
"""
from __future__ import annotations

import importlib.metadata
import logging
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .broadcast import Broadcaster
from .db import Store
from .inference import ModelCache
from .manager import RunManager
from .routes import datasets, gradcheck, inspect, models, pages, presets, runs, spec, sweeps, ws
from .schemas import GUARD
from .security import GuardMiddleware
from .settings import Settings
from .sweeps import InvalidSweep, SweepConflict, SweepError, SweepNotFound, SweepService

log = logging.getLogger("backprop_lab")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: where a wheel holds templates/ and static/ (pyproject.toml maps the top-level folders here)
INSTALLED_WEB_DIR = Path(__file__).resolve().parent / "web"


def package_version() -> str:
    """The installed distribution's version; from a checkout that is not installed, the
    version in its pyproject.toml (the one place it is written)."""
    try:
        return importlib.metadata.version("backprop-lab")
    except importlib.metadata.PackageNotFoundError:
        try:
            with open(PACKAGE_ROOT / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


VERSION = package_version()


def find_web_dir(settings: Settings) -> Path:
    """Where templates/ and static/ live: the setting; else the copy installed with the
    package (a wheel, started from any folder); else the repository root (a checkout,
    editable installs included)."""
    if settings.web_dir:
        return settings.web_dir
    for d in (INSTALLED_WEB_DIR, PACKAGE_ROOT):
        if (d / "templates").is_dir() or (d / "static").is_dir():
            return d
    return PACKAGE_ROOT


class Revalidate:
    """``/static`` headers: ``Cache-Control: no-cache``, so a browser keeps its copy but asks
    every time (StaticFiles answers 304 from the ETag or Last-Modified) and a new version's
    scripts are used as soon as the server is upgraded, never a stale module next to a new one.
    The ETag is weak: the same file is sent gzipped or not, depending on the request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = "no-cache"
                etag = headers.get("etag")
                if etag and not etag.startswith("W/"):
                    headers["ETag"] = "W/" + etag
            await send(message)
        await self.app(scope, receive, send_with_headers)


def static_app(directory: Path) -> ASGIApp:
    """The page's files: gzipped when the browser accepts it (text only: images and fonts are
    compressed already), revalidated on every use."""
    files = StaticFiles(directory=str(directory), check_dir=False)
    return Revalidate(GZipMiddleware(files, minimum_size=500, compresslevel=6))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.db_path)
        store.open()                      # StoreError: the CLI prints it and exits
        manager = RunManager(settings, store, Broadcaster(settings.client_queue_size))
        app.state.manager = manager
        manager.open()
        service = SweepService(manager)
        app.state.sweeps = service
        service.open()
        log.info("data in %s; up to %d workers", settings.data_dir.resolve(),
                 settings.max_workers)
        try:
            yield
        finally:
            service.close()               # no new trial; running sweeps become interrupted
            await manager.close()
            service.flush()
            store.close()
            log.info("all workers stopped")

    app = FastAPI(title="Backprop Lab", version=VERSION, lifespan=lifespan, responses=GUARD,
                  description="Train small NumPy networks in worker processes and watch them "
                              "learn. Contract: server/API.md. Streams: `WS /ws/runs/{id}"
                              "?after_seq=N`, `WS /ws/runs`, `WS /ws/sweeps/{id}?after_seq=N` "
                              "and `WS /ws/sweeps`.")
    app.state.settings = settings
    app.state.models = ModelCache()
    web = find_web_dir(settings)
    app.state.web_dir = web
    app.state.templates = Jinja2Templates(directory=str(web / "templates"))
    if (web / "static").is_dir():    # else /static/... is a 404, not a 500 per request
        app.mount("/static", static_app(web / "static"), name="static")
    errors.install(app)

    @app.exception_handler(SweepError)
    async def _sweep_error(request, exc: SweepError):
        if isinstance(exc, InvalidSweep):
            return errors.error_response(422, exc.errors)
        status = 404 if isinstance(exc, SweepNotFound) else 409 if isinstance(
            exc, SweepConflict) else 400
        return errors.error_response(status, [{"loc": ["path", "sweep_id"], "msg": str(exc)}])

    for module in (runs, sweeps, models, inspect, presets, datasets, gradcheck, spec, ws, pages):
        app.include_router(module.router)
    app.add_middleware(GuardMiddleware, settings=settings)
    app.openapi = lambda: openapi_document(app)
    return app


def openapi_document(app: FastAPI) -> dict:
    """FastAPI's document, less the 422 it adds to every operation with a parameter or a body
    (``HTTPValidationError``: a shape this server never sends, on operations that may never
    answer 422). The operations that can answer 422 list it themselves, with the one error
    shape (schemas.errors)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = FastAPI.openapi(app)          # generated once and kept in app.openapi_schema
    for ops in doc["paths"].values():
        for op in ops.values():
            r = op.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(r.get("content", "")):
                del op["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)
    return doc
