"""Sweeps: create, list, get, stop, extend, resume, delete; the sweep presets."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response
from starlette.requests import HTTPConnection

from ..schemas import (SWEEP_SPEC_DOC, SweepExtend, SweepList, SweepOut, errors,
                       sweep_spec_schema)
from ..sweeps import SweepService, SweepState

router = APIRouter(tags=["sweeps"])


async def get_sweeps(conn: HTTPConnection) -> SweepService:
    return conn.app.state.sweeps


SweepsDep = Annotated[SweepService, Depends(get_sweeps)]


async def get_sweep(sweep_id: str, sweeps: SweepsDep) -> SweepState:
    return sweeps.get(sweep_id)


SweepDep = Annotated[SweepState, Depends(get_sweep)]


@router.post("/api/sweeps", status_code=201, response_model=SweepOut,
             responses=errors(403, 413, 422, 503),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": sweep_spec_schema()}}}},
             summary="Create a sweep (its first trials are queued at once)")
async def create_sweep(sweeps: SweepsDep,
                       body: Annotated[dict[str, Any], Body(description=SWEEP_SPEC_DOC)]):
    return sweeps.create(body).detail()


@router.get("/api/sweeps", response_model=SweepList, summary="All sweeps, newest first")
async def list_sweeps(sweeps: SweepsDep):
    return {"sweeps": [s.summary() for s in sweeps.list()]}


@router.get("/api/sweeps/{sweep_id}", response_model=SweepOut, responses=errors(404),
            summary="The spec, state, every trial (params, metrics, evaluations), the best")
async def get_sweep_detail(sweep: SweepDep):
    return sweep.detail()


@router.post("/api/sweeps/{sweep_id}/stop", response_model=SweepOut, responses=errors(403, 404),
             summary="Cancel queued trials, stop running ones (harmless if ended)")
async def stop_sweep(sweep: SweepDep, sweeps: SweepsDep):
    return (await sweeps.stop(sweep)).detail()


@router.post("/api/sweeps/{sweep_id}/extend", response_model=SweepOut,
             responses=errors(403, 404, 413, 422, e409="the sweep is stopping (or failed)"),
             summary="Add trials and/or narrow parameters; an ended sweep runs again")
async def extend_sweep(body: SweepExtend, sweep: SweepDep, sweeps: SweepsDep):
    return sweeps.extend(sweep, body.trials, body.parameters).detail()


@router.post("/api/sweeps/{sweep_id}/resume", response_model=SweepOut,
             responses=errors(403, 404, e409="nothing to resume: no interrupted trial, no "
                                             "budget left"),
             summary="Re-queue interrupted trials and go on with the budget")
async def resume_sweep(sweep: SweepDep, sweeps: SweepsDep):
    return sweeps.resume(sweep).detail()


@router.delete("/api/sweeps/{sweep_id}", status_code=204, response_class=Response,
               responses=errors(403, 404, 503),
               summary="Stop and delete the sweep's trial runs, then the sweep")
async def delete_sweep(sweep: SweepDep, sweeps: SweepsDep):
    await sweeps.delete(sweep)
    return Response(status_code=204)


@router.get("/api/sweep-presets", summary="The sweep presets: name, title, description, spec, "
                                          "trials")
async def list_sweep_presets():
    from ..sweep.presets import SWEEP_PRESETS, get_sweep_preset, preset_references
    out = []
    for name, p in SWEEP_PRESETS.items():
        spec = get_sweep_preset(name)
        parts = spec["series"] if "series" in spec else [spec]
        out.append({"name": name, "title": p.get("title"), "description": p.get("description"),
                    "reference": p.get("reference"), "spec": spec,
                    "sweeps": parts, "references": preset_references(name)})
    return {"presets": out}
