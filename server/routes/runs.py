"""Runs: create, list, get, delete, stop, pause, resume, change hyperparameters."""
from __future__ import annotations

from fastapi import APIRouter, Response

from engine import PRESETS, SpecError, apply_overrides, get_preset, list_datasets, validate_config

from ..deps import ManagerDep, RunDep
from ..errors import ApiError
from ..schemas import HparamsPatch, RunCreate, RunList, RunOut, errors

router = APIRouter(prefix="/api/runs", tags=["runs"])
NOT_LIVE = "the run is not running or paused"


def build_config(body: RunCreate) -> tuple[dict, dict, str | None]:
    """The run config from a preset + overrides or from model/train/dataset, validated by
    the engine. Returns (normalised config, summary, preset name)."""
    if body.preset is not None:
        if body.preset not in PRESETS:
            raise ApiError(422, ["body", "preset"], f"preset: unknown preset {body.preset[:64]!r} "
                                                    f"(one of {', '.join(PRESETS)})")
        clash = [k for k in ("model", "train", "dataset") if getattr(body, k) is not None]
        if clash:
            raise ApiError(422, ["body", clash[0]], f"{clash[0]}: give either a preset (with "
                                                    "overrides) or model/train/dataset, not both")
        cfg = apply_overrides(get_preset(body.preset), body.overrides or {})
    else:
        if body.overrides is not None:
            raise ApiError(422, ["body", "overrides"], "overrides: only with a preset; put the "
                                                       "values in train/dataset instead")
        if body.model is None:
            raise ApiError(422, ["body", "model"], "model is required (a list of layers), "
                                                   "or give a preset")
        cfg = {"model": body.model, "train": body.train or {}, "dataset": body.dataset or {}}
    if body.name is not None:
        cfg["name"] = body.name.strip() or None
        if cfg["name"] is None:
            cfg.pop("name")
    config, summary = validate(cfg)
    name = config["dataset"]["name"]
    if not next((d["available"] for d in list_datasets() if d["name"] == name), False):
        raise ApiError(422, ["body", "dataset", "name"],
                       f"dataset: {name} is not installed on this server")
    return config, summary, body.preset


def validate(cfg: dict) -> tuple[dict, dict]:
    """engine.spec.validate_config, plus the one edge rule: no server paths from a client."""
    ds = cfg.get("dataset")
    if isinstance(ds, dict) and ds.get("path") is not None:
        raise ApiError(422, ["body", "dataset", "path"],
                       "dataset: path is not accepted over HTTP; the server reads its datasets "
                       "from its own folders (choose the dataset by name)")
    try:
        return validate_config(cfg)
    except SpecError as e:
        raise ApiError(422, errors=[{"loc": ["body", *err["loc"]], "msg": err["msg"]}
                                    for err in e.errors]) from None


@router.post("", status_code=201, response_model=RunOut,
             responses=errors(403, 413, 422, 503),
             summary="Create a run (queued, then started when a worker is free)")
async def create_run(body: RunCreate, manager: ManagerDep):
    config, summary, preset = build_config(body)
    return manager.create(config, summary, preset).row()


@router.get("", response_model=RunList, summary="All runs, newest first")
async def list_runs(manager: ManagerDep):
    return {"runs": [r.row() for r in manager.list()]}


@router.get("/{run_id}", response_model=RunOut, responses=errors(404))
async def get_run(run: RunDep):
    return run.row()


@router.delete("/{run_id}", status_code=204, response_class=Response,
               responses=errors(403, 404, 503),
               summary="Stop it if running, then remove its events and weights")
async def delete_run(run: RunDep, manager: ManagerDep):
    await manager.delete(run)
    return Response(status_code=204)


@router.post("/{run_id}/stop", response_model=RunOut, responses=errors(403, 404),
             summary="Stop (harmless if finished)")
async def stop_run(run: RunDep, manager: ManagerDep):
    return (await manager.stop(run)).row()


@router.post("/{run_id}/pause", response_model=RunOut,
             responses=errors(403, 404, e409="the run is not running (nor paused already)"))
async def pause_run(run: RunDep, manager: ManagerDep):
    return (await manager.pause(run)).row()


@router.post("/{run_id}/resume", response_model=RunOut,
             responses=errors(403, 404, e409="the run is not paused (nor running already)"))
async def resume_run(run: RunDep, manager: ManagerDep):
    return (await manager.resume(run)).row()


@router.patch("/{run_id}", response_model=RunOut, responses=errors(403, 404, 413, 422,
                                                                   e409=NOT_LIVE),
              summary="Change lr, momentum or weight_decay from the next step on")
async def patch_run(body: HparamsPatch, run: RunDep, manager: ManagerDep):
    changes = body.model_dump(exclude_none=True)
    return manager.set_hparams(run, changes).row()
