"""The app: ``create_app(settings)`` wires the store, the workers, the routes and the guards.

Workers are started from the lifespan, never at import, so importing this module
(or the OpenAPI generator) starts nothing.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from . import errors
from .broadcast import Broadcaster
from .db import Store
from .inference import ModelCache
from .manager import RunManager
from .routes import datasets, gradcheck, models, pages, presets, runs, spec, ws
from .security import GuardMiddleware
from .settings import Settings

log = logging.getLogger("backprop_lab")
VERSION = "0.1.0"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def find_web_dir(settings: Settings) -> Path | None:
    """Where templates/ and static/ live: the setting, the repository root, then the cwd."""
    candidates = [settings.web_dir] if settings.web_dir else [PACKAGE_ROOT, Path.cwd()]
    for d in candidates:
        if d and ((d / "templates").is_dir() or (d / "static").is_dir()):
            return d
    return candidates[0]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.db_path)
        store.open()                      # StoreError: the CLI prints it and exits
        manager = RunManager(settings, store, Broadcaster(settings.client_queue_size))
        app.state.manager = manager
        manager.open()
        log.info("data in %s; up to %d workers", settings.data_dir.resolve(),
                 settings.max_workers)
        try:
            yield
        finally:
            await manager.close()
            store.close()
            log.info("all workers stopped")

    app = FastAPI(title="Backprop Lab", version=VERSION, lifespan=lifespan,
                  description="Train small NumPy networks in worker processes and watch them "
                              "learn. Contract: server/API.md. Streams: `WS /ws/runs/{id}"
                              "?after_seq=N` and `WS /ws/runs`.")
    app.state.settings = settings
    app.state.models = ModelCache()
    web = find_web_dir(settings)
    app.state.web_dir = web
    app.state.templates = Jinja2Templates(directory=str(web / "templates")) if web else None
    if web:
        app.mount("/static", StaticFiles(directory=str(web / "static"), check_dir=False),
                  name="static")
    errors.install(app)
    for module in (runs, models, presets, datasets, gradcheck, spec, ws, pages):
        app.include_router(module.router)
    app.add_middleware(GuardMiddleware, settings=settings)
    return app
