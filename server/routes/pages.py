"""The page (templates/index.html, owned by the page engineer) and a health check."""
from __future__ import annotations

import os
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..deps import ManagerDep, SettingsDep

router = APIRouter()

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backprop Lab</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Backprop Lab</h1>
<p>The server is running, but the dashboard is not built yet
(<code>templates/index.html</code> was not found{where}).</p>
<p>The API works: see <a href="/docs">/docs</a> (OpenAPI) and <code>server/API.md</code>.</p>
</body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, settings: SettingsDep):
    templates = request.app.state.templates
    if templates is not None:
        try:
            return templates.TemplateResponse(request, "index.html", {
                "token_required": settings.token_required,
                "version": request.app.version})
        except Exception as e:  # noqa: BLE001 - TemplateNotFound: the page is not built yet
            if type(e).__name__ != "TemplateNotFound":
                raise
    where = request.app.state.web_dir
    return HTMLResponse(PLACEHOLDER.format(where=f" under {escape(str(where))}" if where else ""))


@router.get("/api/health", tags=["health"], summary="Liveness and load")
async def health(request: Request, manager: ManagerDep):
    runs = manager.runs.values()
    return {"ok": True, "version": request.app.version, "pid": os.getpid(),
            "read_only": manager.store.read_only,
            "workers": len(manager.pool.handles),
            "worker_pids": sorted(h.process.pid for h in manager.pool.handles.values()
                                  if h.process.pid),
            "max_workers": manager.settings.max_workers,
            "running": sum(r.status in ("running", "paused") for r in runs),
            "queued": sum(r.status == "queued" for r in runs),
            "clients": manager.broadcaster.clients,
            "dropped_clients": manager.broadcaster.dropped}
