"""The pages (templates/index.html, templates/sweeps.html, rendered with Jinja2) and a health
check."""
from __future__ import annotations

import os
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import TemplateNotFound

from ..deps import ManagerDep, SettingsDep

router = APIRouter()

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backprop Lab</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Backprop Lab</h1>
<p>The server is running, but the dashboard's files are missing
(<code>templates/index.html</code> was not found under {where}; set
<code>BACKPROP_WEB_DIR</code> to a folder holding <code>templates/</code> and <code>static/</code>).</p>
<p>The API works: see <a href="/docs">/docs</a> (OpenAPI) and <code>server/API.md</code>.</p>
</body></html>
"""


def _page(request: Request, settings, template: str):
    try:
        return request.app.state.templates.TemplateResponse(request, template, {
            "token_required": settings.token_required,
            "version": request.app.version})
    except TemplateNotFound:      # the web folder (server/main.py: find_web_dir) has no page
        return HTMLResponse(PLACEHOLDER.format(where=escape(str(request.app.state.web_dir))))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, settings: SettingsDep):
    return _page(request, settings, "index.html")


@router.get("/sweeps", response_class=HTMLResponse, include_in_schema=False)
async def sweeps_page(request: Request, settings: SettingsDep):
    return _page(request, settings, "sweeps.html")


@router.get("/api/health", tags=["health"], summary="Liveness and load")
async def health(request: Request, manager: ManagerDep):
    runs = manager.runs.values()
    return {"ok": True, "version": request.app.version, "pid": os.getpid(),
            "read_only": manager.store.read_only,
            "workers": len(manager.pool.handles),
            "worker_pids": sorted(h.process.pid for h in manager.pool.handles.values()
                                  if h.process.pid),
            "max_workers": manager.settings.max_workers,
            "dask": manager.settings.dask,
            "dask_runs": len(manager.dask.handles) if manager.dask else 0,
            "running": sum(r.status in ("running", "paused") for r in runs),
            "queued": sum(r.status == "queued" for r in runs),
            "clients": manager.broadcaster.clients,
            "dropped_clients": manager.broadcaster.dropped}
