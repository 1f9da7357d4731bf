"""Runs: create, list, get, delete, stop, pause, resume, change hyperparameters, continue,
checkpoints, fork."""
from __future__ import annotations

from fastapi import APIRouter, Response

from engine import (BSDE_PRESETS, PRESETS, SpecError, apply_overrides, get_preset, is_bsde,
                    list_datasets, validate_run_config)

from ..deps import ManagerDep, RunDep
from ..errors import ApiError
from ..checkpoints import listing, nearest, path_for
from ..schemas import (CheckpointList, ForkBody, HparamsPatch, NotesBody, RunCreate, RunList,
                       RunOut, StepBody, TempoBody, errors)

router = APIRouter(prefix="/api/runs", tags=["runs"])
NOT_LIVE = "the run is not running or paused"


def build_config(body: RunCreate) -> tuple[dict, dict, str | None]:
    """The run config from a preset + overrides or from model/train/dataset, validated by
    the engine. Returns (normalised config, summary, preset name)."""
    bsde_fields = [k for k in ("equation", "subnet", "y_init_range") if getattr(body, k) is not None]
    if body.preset is not None:
        if body.preset not in PRESETS and body.preset not in BSDE_PRESETS:
            raise ApiError(422, ["body", "preset"], f"preset: unknown preset {body.preset[:64]!r} "
                                                    f"(one of {', '.join([*PRESETS, *BSDE_PRESETS])})")
        clash = [k for k in ("model", "train", "dataset", *bsde_fields) if getattr(body, k) is not None]
        if clash:
            raise ApiError(422, ["body", clash[0]], f"{clash[0]}: give either a preset (with "
                                                    "overrides) or the config's fields, not both")
        try:
            cfg = apply_overrides(get_preset(body.preset), body.overrides or {})
        except SpecError as e:
            raise ApiError(422, errors=[{"loc": ["body", *err["loc"]], "msg": err["msg"]}
                                        for err in e.errors]) from None
    elif body.task == "bsde" or bsde_fields:
        if body.task != "bsde":
            raise ApiError(422, ["body", "task"], f"task: {bsde_fields[0]} belongs to a bsde run; "
                                                  "give \"task\": \"bsde\"")
        clash = [k for k in ("model", "dataset", "overrides") if getattr(body, k) is not None]
        if clash:
            raise ApiError(422, ["body", clash[0]], f"{clash[0]}: an image-task field; a bsde run "
                                                    "has equation, subnet, y_init_range and train")
        cfg = {"task": "bsde", "equation": body.equation, "train": body.train or {}}
        for k in ("subnet", "y_init_range"):
            if getattr(body, k) is not None:
                cfg[k] = getattr(body, k)
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
    if is_bsde(config):
        return config, summary, body.preset
    name = config["dataset"]["name"]
    if not next((d["available"] for d in list_datasets() if d["name"] == name), False):
        raise ApiError(422, ["body", "dataset", "name"],
                       f"dataset: {name} is not installed on this server")
    return config, summary, body.preset


def validate(cfg: dict) -> tuple[dict, dict]:
    """engine.spec.validate_config, plus the one edge rule: no server paths from a client."""
    ds = cfg.get("dataset")
    if isinstance(ds, dict) and ds.get("path") is not None and not is_bsde(cfg):
        raise ApiError(422, ["body", "dataset", "path"],
                       "dataset: path is not accepted over HTTP; the server reads its datasets "
                       "from its own folders (choose the dataset by name)")
    try:
        return validate_run_config(cfg)
    except SpecError as e:
        raise ApiError(422, errors=[{"loc": ["body", *err["loc"]], "msg": err["msg"]}
                                    for err in e.errors]) from None


@router.post("", status_code=201, response_model=RunOut,
             responses=errors(403, 413, 422, 503),
             summary="Create a run (queued, then started when a worker is free)")
async def create_run(body: RunCreate, manager: ManagerDep):
    config, summary, preset = build_config(body)
    if body.where == "dask" and manager.dask is None:
        raise ApiError(422, ["body", "where"], "where: this server has no Dask cluster (start "
                                               "it with backprop-lab serve --dask ADDR|local)")
    return manager.create(config, summary, preset, start_paused=body.start_paused,
                          where=body.where).row()


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


@router.post("/{run_id}/notes", response_model=RunOut, responses=errors(403, 404, 413, 422, 503),
             summary="Set the run's notes and/or tags (in any state)")
async def set_notes(body: NotesBody, run: RunDep, manager: ManagerDep):
    return manager.set_notes(run, body.notes, body.tags).row()


# ---------------------------------------------------------------- tempo and step


@router.post("/{run_id}/tempo", response_model=RunOut,
             responses=errors(403, 404, 413, 422, e409=NOT_LIVE),
             summary="At most N steps per second from now on (null: full speed)")
async def set_tempo(body: TempoBody, run: RunDep, manager: ManagerDep):
    return manager.set_tempo(run, body.steps_per_second).row()


@router.post("/{run_id}/step", response_model=RunOut,
             responses=errors(403, 404, 413, 422, e409="the run is not paused"),
             summary="Take N steps of a paused run; it stays paused")
async def step_run(body: StepBody, run: RunDep, manager: ManagerDep):
    return manager.step(run, body.steps).row()


# ---------------------------------------------------------------- continue, checkpoints, fork

FORK_FIXED = {"model": "the architecture cannot change in a fork: start a new run instead",
              "dataset": "the dataset cannot change in a fork (train_limit can)",
              "path": "the dataset cannot change in a fork (train_limit can)"}


@router.post("/{run_id}/continue", response_model=RunOut,
             responses=errors(403, 404, 503, e409="the run is running, completed, diverged or "
                                                   "has no checkpoint to continue from"),
             summary="Go on from the latest checkpoint, exactly (same id, same stream)")
async def continue_run(run: RunDep, manager: ManagerDep):
    return (await manager.continue_run(run)).row()


def _checkpoints(run, manager) -> list[dict]:
    kept = listing(manager.settings.runs_dir / run.id)
    evals = {e["step"]: e for e in manager.store.events_of_type(run.id, "eval")} if kept else {}
    rows = [{"step": k.step, "bytes": k.bytes, "epoch": evals.get(k.step, {}).get("epoch"),
             "test_accuracy": evals.get(k.step, {}).get("test_accuracy"),
             "test_loss": evals.get(k.step, {}).get("test_loss"), "best": False} for k in kept]
    scored = [r for r in rows if r["test_accuracy"] is not None]
    if scored:
        max(scored, key=lambda r: (r["test_accuracy"], -r["step"]))["best"] = True
    return rows


@router.get("/{run_id}/checkpoints", response_model=CheckpointList, responses=errors(404),
            summary="The checkpoints kept through time (one per evaluation, thinned)")
async def list_checkpoints(run: RunDep, manager: ManagerDep):
    rows = _checkpoints(run, manager)
    return {"checkpoints": rows, "total_bytes": sum(r["bytes"] for r in rows),
            "budget_bytes": int(manager.settings.checkpoint_budget_mb * 2**20)}


@router.post("/{run_id}/fork", status_code=201, response_model=RunOut,
             responses=errors(403, 404, 413, 422, 503),
             summary="A new run from this run's checkpoint at a step, with changed settings")
async def fork_run(body: ForkBody, run: RunDep, manager: ManagerDep):
    overrides = dict(body.overrides or {})
    for key, why in FORK_FIXED.items():
        if key in overrides:
            raise ApiError(422, ["body", "overrides", key], f"overrides.{key}: {why}")
    run_dir = manager.settings.runs_dir / run.id
    source = path_for(run_dir, body.step)
    if not source.is_file():
        near = nearest(run_dir, body.step)
        hint = (f"the nearest kept is step {near}" if near is not None else
                "this run has no checkpoints kept through time")
        raise ApiError(404, ["body", "step"], f"step: no checkpoint at step {body.step}; {hint}")
    cfg = apply_overrides(run.config, overrides)
    name = body.name.strip() if body.name and body.name.strip() else None
    cfg["name"] = name or f"{run.name} @{body.step}"
    config, summary = validate(cfg)
    if summary["total_steps"] <= body.step:
        raise ApiError(422, ["body", "overrides", "epochs"],
                       f"overrides: the fork would have no steps left: it starts after step "
                       f"{body.step} and its config trains {summary['total_steps']} steps in all "
                       "(give more epochs or iterations)")
    return manager.create(config, summary, run.preset, fork=(run.id, body.step, source)).row()
