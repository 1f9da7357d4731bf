"""A model spec checked without training, and a run's weights: predict, export, import."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from engine import SpecError, is_bsde, validate_config, validate_run_config

from ..deps import ManagerDep, ModelsDep, RunDep, SettingsDep
from ..errors import ApiError
from ..inference import export_named, import_weights, predict
from ..schemas import PredictBody, PredictOut, ValidateBody, ValidateOut, errors

router = APIRouter(tags=["models"])


@router.post("/api/models/validate", response_model=ValidateOut, responses=errors(403, 413, 422),
             summary="Shapes, parameter counts and memory, or every error (200 either way)")
async def validate_model(body: ValidateBody):
    if body.task == "bsde":
        cfg = {"task": "bsde", "equation": body.equation, "subnet": body.model,
               "train": body.train or {}}
        if body.y_init_range is not None:
            cfg["y_init_range"] = body.y_init_range
        if body.dataset is not None:
            cfg["dataset"] = body.dataset
        try:
            _, summary = validate_run_config(cfg)
        except SpecError as e:      # the subnet is the page's model: its errors go there
            return {"valid": False, "summary": None, "errors": [
                {"loc": ["model", *x["loc"][1:]] if x["loc"][:1] == ["subnet"] else x["loc"],
                 "msg": x["msg"]} for x in e.errors]}
        return {"valid": True, "errors": [], "summary": summary}
    cfg = {"model": body.model, "train": body.train or {}, "dataset": body.dataset or {}}
    if (body.dataset or {}).get("path") is not None:
        return {"valid": False, "summary": None, "errors": [{
            "loc": ["dataset", "path"], "msg": "dataset: path is not accepted over HTTP; choose "
                                               "the dataset by name"}]}
    try:
        _, summary = validate_config(cfg)
    except SpecError as e:
        return {"valid": False, "errors": e.errors, "summary": e.summary}
    return {"valid": True, "errors": [], "summary": summary}


@router.post("/api/runs/{run_id}/predict", response_model=PredictOut, responses=errors(
    403, 404, 413, 422, e409="the run has no saved weights yet"),
             summary="Class probabilities and first-layer feature maps for one image")
async def predict_image(body: PredictBody, run: RunDep, manager: ManagerDep, models: ModelsDep):
    if is_bsde(run.config):
        raise ApiError(409, ["path", "run_id"], f"run {run.id} is a bsde run: its network takes "
                                                "Brownian paths, not images")
    return await run_in_threadpool(predict, models, run.config, manager.checkpoint_path(run),
                                   body.image)


@router.get("/api/runs/{run_id}/weights", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the run's latest weights as .npz (no pickle)"},
                       **errors(e404="Unknown run, or no weights saved yet")})
async def export_weights(run: RunDep, manager: ManagerDep):
    path = manager.checkpoint_path(run)
    if not path.is_file():
        raise ApiError(404, ["path", "run_id"], "this run has no saved weights yet")
    if is_bsde(run.config):      # the solver's own checkpoint (u0, z0, the stacked subnets)
        return FileResponse(path, media_type="application/octet-stream",
                            filename=f"backprop-lab-{run.id}.npz")
    data = await run_in_threadpool(export_named, run.config, path)
    return Response(data, media_type="application/octet-stream", headers={
        "content-disposition": f'attachment; filename="backprop-lab-{run.id}.npz"'})


@router.post("/api/runs/{run_id}/weights",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {
                     "type": "string", "format": "binary", "contentMediaType": "application/zip",
                     "description": "an .npz (a zip of .npy arrays, no pickle) as GET exports it: "
                                    "one finite float array per parameter of the run's model"}}}}},
             responses=errors(403, 404, 413, e409="the run is queued, running or paused",
                              e422="not an .npz, an array missing or of the wrong shape, "
                                   "dtype or values (NaN, Inf): `loc` names the array"),
             summary="Load weights (.npz as exported) into a finished run with the same model")
async def upload_weights(request: Request, run: RunDep, manager: ManagerDep,
                         models: ModelsDep, settings: SettingsDep):
    if run.status in ("queued", "running", "paused"):
        raise ApiError(409, ["path", "run_id"], f"run {run.id} is {run.status}; weights can be "
                                                "loaded once it has finished")
    if is_bsde(run.config):
        raise ApiError(409, ["path", "run_id"], f"run {run.id} is a bsde run: weights are loaded "
                                                "into image runs only (continue or fork it instead)")
    data = await request.body()
    if not data:
        raise ApiError(422, ["body"], "the body is empty; send the .npz file's bytes")
    path = manager.checkpoint_path(run)
    await run_in_threadpool(import_weights, run.config, path, data, settings.max_upload_bytes * 4)
    models.forget(path)
    manager.weights_imported(run)
    return {"ok": True}
