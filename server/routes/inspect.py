"""Looking back and deeper: every layer of a run's network, and its stored snapshots."""
from __future__ import annotations

import bisect

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from engine import is_bsde

from ..deps import ManagerDep, ModelsDep, RunDep
from ..errors import ApiError
from ..inference import inspect
from ..schemas import InspectBody, InspectOut, SnapshotList, errors

router = APIRouter(prefix="/api/runs", tags=["models"])


@router.post("/{run_id}/inspect", response_model=InspectOut, response_model_exclude_none=False,
             responses=errors(403, 404, 413, 422, e409="the run has no saved weights yet"),
             summary="Every layer's output, every layer's weights and the saliency for a "
                     "test image or a drawn one, with the run's latest weights")
async def inspect_image(body: InspectBody, run: RunDep, manager: ManagerDep, models: ModelsDep):
    if is_bsde(run.config):
        raise ApiError(409, ["path", "run_id"], f"run {run.id} is a bsde run: its network takes "
                                                "Brownian paths, not images")
    if (body.image is None) == (body.pixels is None):
        raise ApiError(422, ["body", "image"], "give either image (a test-set index) or pixels "
                                               "(a drawn image), not both")
    return await run_in_threadpool(inspect, models, run.config, manager.checkpoint_path(run),
                                   body.image, body.pixels, list(dict.fromkeys(body.what)),
                                   body.cls)


@router.get("/{run_id}/snapshots", responses=errors(404, e422="step out of range"),
            summary="The run's stored snapshots (step and metrics), or with ?step=K the "
                    "snapshot event nearest at or before step K")
async def snapshots(run: RunDep, manager: ManagerDep,
                    step: int | None = Query(None, ge=0, description="a step of the run")):
    store = manager.store
    rows = store.snapshot_steps(run.id)
    if step is None:
        evals = store.eval_metrics(run.id)
        steps = [e[0] for e in evals]
        out = []
        for seq, s, epoch in rows:
            k = bisect.bisect_right(steps, s) - 1
            acc, loss = (evals[k][1], evals[k][2]) if k >= 0 else (None, None)
            out.append({"seq": seq, "step": s, "epoch": epoch, "test_accuracy": acc,
                        "test_loss": loss})
        return SnapshotList(snapshots=out)
    if not rows:
        raise ApiError(422, ["query", "step"], "this run has no stored snapshots yet")
    first, last = rows[0][1], rows[-1][1]
    if step < first or step > last:
        raise ApiError(422, ["query", "step"], f"step must be in {first}..{last} (the run's "
                                               f"stored snapshots), got {step}")
    k = bisect.bisect_right([r[1] for r in rows], step) - 1
    event = store.event_at(run.id, rows[k][0])
    if event is None:                                        # deleted meanwhile
        raise ApiError(404, ["path", "run_id"], "the run's snapshots are gone")
    return event
