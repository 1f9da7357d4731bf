"""Dependencies for the routes, declared with ``Annotated`` (as in the FastAPI template)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .inference import ModelCache
from .manager import Run, RunManager
from .settings import Settings


async def get_manager(conn: HTTPConnection) -> RunManager:
    return conn.app.state.manager


async def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


async def get_models(conn: HTTPConnection) -> ModelCache:
    return conn.app.state.models


ManagerDep = Annotated[RunManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]


async def get_run(run_id: str, manager: ManagerDep) -> Run:
    return manager.get(run_id)


RunDep = Annotated[Run, Depends(get_run)]
