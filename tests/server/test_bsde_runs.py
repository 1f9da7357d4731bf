"""Deep BSDE runs over HTTP against a real server: created from a preset or a config, streamed
(u0 with every step, evaluations against the z = 0 loss, the |z| picture), stored with their
result, stopped and continued to the same numbers, gradient-checked; bad input names its field."""

import pytest

from .conftest import (TERMINAL, assert_contiguous, create, fold, history, wait_for,
                       wait_status)

SMALL = {"preset": "bsde-hjb-d10", "overrides": {"iterations": 120, "eval_every": 40, "seed": 3}}


def losses(msgs):
    """(loss, u0) of each step, as the page folds them."""
    return fold(msgs, lambda m: (m["loss"], m["u0"]))


@pytest.fixture(scope="module")
def finished(server, api):
    run = create(api, SMALL)
    done = wait_status(api, run["id"], TERMINAL, timeout=120)
    assert done["status"] == "completed", done["error"]
    return done, history(server, run["id"])


def test_a_preset_run_streams_u0_evaluations_and_its_result(finished):
    done, msgs = finished
    assert_contiguous(msgs)
    started = next(m for m in msgs if m["type"] == "run_started")
    assert started["config"]["task"] == "bsde" and started["summary"]["reference"] == 2.157022
    steps = [m["step"] for m in msgs if m["type"] == "progress"]
    assert steps == list(range(1, 121))
    assert all(m["accuracy"] is None and isinstance(m["u0"], float)
               for m in msgs if m["type"] == "progress")
    evals = [m for m in msgs if m["type"] == "bsde_eval"]
    assert [e["step"] for e in evals] == [0, 40, 80, 120]
    z0 = evals[0]["z0_loss"]
    assert 0.1 < z0 < 0.3 and all(e["z0_loss"] == z0 for e in evals)    # one fixed valid set
    assert evals[-1]["valid_loss"] < evals[0]["valid_loss"]              # it learns
    snap = [m for m in msgs if m["type"] == "bsde_snapshot"][-1]
    assert len(snap["z_mean_abs"]) == 20 and len(snap["times"]) == 21
    assert len(snap["paths"]) == 4 and all(len(p) == 21 for p in snap["paths"])
    assert snap["exact_paths"] is None                  # HJB has no closed form along a path
    res = done["final"]["result"]
    assert res["u0"] == evals[-1]["u0"] and res["valid_loss"] == evals[-1]["valid_loss"]
    assert abs(res["relative_error"] - abs(res["u0"] - 2.157022) / 2.157022) < 1e-12
    assert done["summary"]["task"] == "bsde" and done["summary"]["total_steps"] == 120


def test_a_stopped_run_continues_to_the_same_numbers(server, api, finished):
    _, ref = finished
    run = create(api, {**SMALL, "start_paused": True})
    rid = run["id"]
    wait_status(api, rid, "paused")
    assert api.post(f"/api/runs/{rid}/step", json={"steps": 50}).status_code == 200
    wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step") == 50,
             what="50 steps")
    assert api.post(f"/api/runs/{rid}/stop").status_code == 200
    stopped = wait_status(api, rid, TERMINAL)
    assert stopped["status"] == "stopped" and stopped["weights_step"] == 50
    r = api.post(f"/api/runs/{rid}/continue")
    assert r.status_code == 200, r.text
    assert wait_status(api, rid, TERMINAL, timeout=120)["status"] == "completed"
    msgs = history(server, rid)
    assert any(m["type"] == "continued" and m["step"] == 50 for m in msgs)
    assert losses(msgs) == losses(ref)               # float64, bitwise


def test_the_gradient_check_of_a_bsde_run_agrees(api, finished):
    done, _ = finished
    r = api.post("/api/gradcheck", json={"run_id": done["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "agrees" and body["max_rel_error"] < 1e-4
    names = [row["name"] for row in body["rows"]]
    assert names[:2] == ["u0", "z0"] and len(names) == 2 + 4 + 8      # stacked over 19 steps
    assert all(row["shape"][0] == 19 for row in body["rows"][2:])


def test_image_only_endpoints_refuse_a_bsde_run(api, finished):
    done, _ = finished
    rid = done["id"]
    r = api.post(f"/api/runs/{rid}/predict", json={"image": [[0.0] * 28] * 28})
    assert r.status_code == 409 and "bsde run" in r.json()["detail"][0]["msg"]
    r = api.post(f"/api/runs/{rid}/inspect", json={"image": 0})
    assert r.status_code == 409


EQ = {"name": "hjb_lq", "dim": 3, "total_time": 1.0, "num_time_interval": 4}


@pytest.mark.parametrize("body, loc, words", [
    ({"task": "bsde", "equation": {**EQ, "name": "heat"}}, ["equation", "name"],
     "unknown equation"),
    ({"task": "bsde", "equation": {**EQ, "dim": 10**6}}, ["equation", "dim"], "integer"),
    ({"task": "bsde", "equation": {**EQ, "dim": 0}}, ["equation", "dim"], "integer"),
    ({"task": "bsde", "equation": {**EQ, "num_time_interval": 0}},
     ["equation", "num_time_interval"], "integer"),
    ({"task": "bsde", "equation": {**EQ, "total_time": -1}}, ["equation", "total_time"],
     "above 0"),
    ({"task": "bsde", "equation": EQ, "y_init_range": [1, 0]}, ["y_init_range"],
     "above high"),
    ({"task": "bsde", "equation": EQ, "subnet": [{"type": "dense", "units": 7}]},
     ["subnet"], "must end in 3 units"),
    ({"task": "bsde", "equation": EQ, "train": {"iterations": 10**9}},
     ["train", "iterations"], "integer"),
    ({"task": "bsde", "equation": EQ, "dataset": {"name": "mnist"}}, ["dataset"],
     "image-task field"),
    ({"equation": EQ}, ["task"], "bsde"),
    ({"preset": "bsde-hjb-d10", "overrides": {"train_limit": 5}},
     ["overrides", "train_limit"], "not an override of a bsde run"),
    ({"preset": "bsde-hjb-d10", "equation": EQ}, ["equation"], "not both"),
])
def test_bad_bsde_input_names_the_field(api, body, loc, words):
    r = api.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    hit = [d for d in detail if d["loc"] == loc]
    assert hit and words in hit[0]["msg"], detail


def test_a_bsde_config_runs_like_a_preset(api):
    r = api.post("/api/runs", json={"task": "bsde", "equation": {**EQ, "name": "allen_cahn"},
                                    "subnet": "tanh", "y_init_range": [0.3, 0.5],
                                    "train": {"iterations": 30, "eval_every": 10}})
    assert r.status_code == 201, r.text
    done = wait_status(api, r.json()["id"], TERMINAL, timeout=60)
    assert done["status"] == "completed" and done["final"]["result"]["reference"] is None


BSDE_SWEEP = {"name": "bsde lr", "base": {"preset": "bsde-hjb-d10",
                                         "overrides": {"iterations": 60, "eval_every": 20}},
              "method": "grid", "parameters": {"train.lr": {"values": [0.01, 0.002]},
                                               "train.batch_size": {"values": [32, 64]}},
              "max_parallel": 2}


def test_a_sweep_over_a_bsde_preset_minimises_the_validation_loss(server, api):
    r = api.post("/api/sweeps", json=BSDE_SWEEP)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["spec"] == BSDE_SWEEP
    sweep = wait_for(lambda: (s := api.get(f"/api/sweeps/{sid}").json())["status"] == "finished"
                     and s, timeout=180, what="the sweep")
    assert sweep["counts"] == {"completed": 4}
    norm = sweep["objective"] if "objective" in sweep else None
    for t in sweep["trials"]:
        assert [e["step"] for e in t["evals"]] == [20, 40, 60]
        assert t["objective"] == t["evals"][-1]["valid_loss"] > 0
    best = min(sweep["trials"], key=lambda t: (t["objective"], t["number"]))
    assert sweep["best"]["number"] == best["number"], norm
    runs = {x["id"]: x for x in api.get("/api/runs").json()["runs"]}
    for t in sweep["trials"]:
        run = runs[t["run_id"]]
        assert run["config"]["task"] == "bsde" and run["config"]["train"]["lr"] == t["params"]["train.lr"]
        assert run["final"]["result"]["valid_loss"] == t["objective"]


@pytest.mark.parametrize("spec, loc, words", [
    ({**BSDE_SWEEP, "objective": {"metric": "test_accuracy"}}, ["objective", "metric"],
     "Deep BSDE base measures"),
    ({**BSDE_SWEEP, "base": {"preset": "bsde-hjb-d10", "overrides": {"train_limit": 3}}},
     ["base", "overrides", "train_limit"], "not an override of a bsde run"),
    ({**BSDE_SWEEP, "parameters": {"train.lr": {"values": [0.01, -1]}}},
     ["parameters", "train.lr", "values", 1],
     "train.lr"),
    ({**BSDE_SWEEP, "base": {"preset": "mlp"}, "objective": {"metric": "valid_loss"}},
     ["objective", "metric"], "Deep BSDE metric"),
])
def test_bad_bsde_sweeps_name_the_field(api, spec, loc, words):
    r = api.post("/api/sweeps", json=spec)
    assert r.status_code == 422, r.text
    hit = [d for d in r.json()["detail"] if d["loc"] == loc]
    assert hit and words in hit[0]["msg"], r.json()["detail"]


def test_every_listed_bsde_preset_validates_as_the_page_posts_it(api):
    """The page puts a preset's config in its form and posts it back: the listing spells the
    subnet out as layers (a preset without one gets the reference subnet), and the config
    validates as it stands."""
    presets = [p for p in api.get("/api/presets").json()["presets"] if p.get("task") == "bsde"]
    assert len(presets) >= 7
    for p in presets:
        cfg = p["config"]
        assert isinstance(cfg["subnet"], list) and cfg["subnet"], p["name"]
        dense = [layer for layer in cfg["subnet"] if layer["type"] == "dense"]
        assert dense[-1]["units"] == cfg["equation"]["dim"], p["name"]
        body = {"task": "bsde", "model": cfg["subnet"], "equation": cfg["equation"],
                "train": cfg["train"], "y_init_range": cfg["y_init_range"]}   # as the page sends it
        r = api.post("/api/models/validate", json=body)
        assert r.status_code == 200 and r.json()["valid"] is True, (p["name"], r.json())
