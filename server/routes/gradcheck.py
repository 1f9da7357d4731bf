"""Numerical vs analytic gradients (engine.gradcheck) for a spec or a run's weights."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from engine import DatasetError

from ..deps import ManagerDep
from ..errors import ApiError
from ..inference import gradcheck
from ..manager import RunNotFound
from ..schemas import GradcheckBody, GradcheckOut, errors

router = APIRouter(prefix="/api/gradcheck", tags=["gradcheck"])


@router.post("", response_model=GradcheckOut, responses=errors(
    403, 413, 422, e404="Unknown run_id",
    e409="the run has no saved weights yet, or the dataset cannot be loaded"),
             summary="Relative error per parameter tensor, float64, a few test images")
async def check_gradients(body: GradcheckBody, manager: ManagerDep):
    if (body.run_id is None) == (body.model is None):
        raise ApiError(422, ["body", "model"], "give either model (a layer list) or run_id")
    if body.dataset is not None and body.dataset.get("path") is not None:
        raise ApiError(422, ["body", "dataset", "path"], "dataset: path is not accepted over HTTP")
    try:
        if body.run_id is not None:
            try:
                run = manager.get(body.run_id)
            except RunNotFound:
                raise ApiError(404, ["body", "run_id"],
                               f"run {body.run_id[:40]!r} not found") from None
            return await run_in_threadpool(gradcheck, run.config, None, None,
                                           path=manager.checkpoint_path(run))
        return await run_in_threadpool(gradcheck, None, body.model, body.dataset)
    except DatasetError as e:
        raise ApiError(409, ["body", "dataset"], f"the dataset cannot be loaded: {e}") from None
