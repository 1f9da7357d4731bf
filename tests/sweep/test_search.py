"""The Optuna search: reproducible with a seed, conditions respected, prune reasons honest."""
import math

import pytest

from server.sweep.search import Search
from server.sweep.spec import validate_sweep

SPACE = {"train.lr": {"min": 1e-4, "max": 1.0, "log": True},
         "train.optimizer": {"values": ["sgd", "adam"]},
         "train.momentum": {"min": 0.5, "max": 0.99, "when": {"train.optimizer": "sgd"}},
         "train.batch_size": {"values": [16, 32, 64]}}


def score(params):
    """A deterministic stand-in for a trial's accuracy: best near lr 0.01."""
    bonus = 0.05 if params["train.batch_size"] == 32 else 0
    return 1 - abs(math.log10(params["train.lr"]) + 2) / 4 + bonus


def proposals(method, seed, n=14):
    s = validate_sweep({"base": {"preset": "digits8-mlp"}, "method": method, "seed": seed,
                        "max_trials": n, "parameters": SPACE})
    search, out = Search(s), []
    while (p := search.ask()) is not None:
        out.append(p.params)
        search.tell(p.number, "completed", score(p.params))
    return out


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_same_seed_same_trials_other_seed_other_trials(method):
    a = proposals(method, 1)
    assert len(a) == 14
    assert proposals(method, 1) == a
    assert proposals(method, 2) != a


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_parameter_is_suggested_only_when_its_condition_holds(method):
    trials = proposals(method, 5, n=20)
    assert {p["train.optimizer"] for p in trials} == {"sgd", "adam"}
    for p in trials:
        assert ("train.momentum" in p) == (p["train.optimizer"] == "sgd")
        assert 1e-4 <= p["train.lr"] <= 1.0 and p["train.batch_size"] in (16, 32, 64)


def test_tpe_moves_towards_the_better_region():
    trials = proposals("tpe", 0, n=30)
    last = trials[-10:]         # after the 10 random start-up trials (30 // 3, at most 10)
    err = lambda ps: sum(abs(math.log10(p["train.lr"]) + 2) for p in ps) / len(ps)  # noqa: E731
    assert err(last) < err(trials[:10])


def test_grid_is_told_to_optuna_in_listed_order():
    s = validate_sweep({"base": {"preset": "digits8-mlp"}, "method": "grid",
                        "parameters": {"train.schedule": {"values": [{"type": "constant"},
                                                                     {"type": "cosine"}]},
                                       "train.lr": {"values": [0.1, 0.01]}}})
    search = Search(s)
    got = []
    while (p := search.ask()) is not None:
        got.append(p.params)
        search.tell(p.number, "completed", 0.5)
    assert got == s["grid"]
    assert len(search.study.trials) == 4 and search.study.trials[3].params["train.lr"] == 0.01


def test_asha_reason_states_the_rung_cutoff():
    s = validate_sweep({"base": {"preset": "digits8-mlp"}, "method": "random", "max_trials": 6,
                        "parameters": {"train.lr": {"min": 0.01, "max": 0.1}},
                        "early_stopping": {"type": "asha", "reduction_factor": 2}})
    search = Search(s)
    trials = [search.ask() for _ in range(6)]
    values = [0.5, 0.6, 0.4, 0.7, 0.3, 0.65]
    reasons = [search.report(t.number, 1, v) for t, v in zip(trials, values)]
    assert [r is not None for r in reasons] == [False, False, True, False, True, False]
    r = reasons[4]      # 5 values reached rung 0: the top 5 // 2 = 2 go on; the 2nd best is 0.6
    assert r["rule"] == "asha" and r["eval"] == 1 and r["value"] == 0.3
    assert r["threshold"] == 0.6 and r["compared"] == 5 and "0.6" in r["message"]
    assert search.report(trials[4].number, 2, 0.9) is None      # decided: no second verdict


def test_median_reason_states_the_median_of_completed_trials():
    s = validate_sweep({"base": {"preset": "digits8-mlp"}, "method": "random", "max_trials": 4,
                        "parameters": {"train.lr": {"min": 0.01, "max": 0.1}},
                        "early_stopping": {"type": "median", "n_startup_trials": 3}})
    search = Search(s)
    for final in (0.8, 0.6, 0.9):
        t = search.ask()
        assert search.report(t.number, 1, final - 0.2) is None
        search.tell(t.number, "completed", final)
    t = search.ask()
    r = search.report(t.number, 1, 0.45)
    assert r["rule"] == "median" and r["threshold"] == pytest.approx(0.6)   # median(0.6, 0.4, 0.7)
    assert r["value"] == 0.45 and r["compared"] == 3



@pytest.mark.parametrize("method", ["random", "tpe"])
def test_start_from_base_runs_the_base_designs_values_first(method):
    """digits8-mlp trains with adam, lr 0.01, batch 32: that is trial 1 (no momentum, whose
    condition does not hold), then the search goes on as it would, reproducibly."""
    def run(start):
        spec = {"base": {"preset": "digits8-mlp"}, "method": method, "seed": 3,
                "max_trials": 6, "parameters": SPACE, "start_from_base": start}
        search, out = Search(validate_sweep(spec)), []
        while (p := search.ask()) is not None:
            out.append(p.params)
            search.tell(p.number, "completed", score(p.params))
        return out
    trials = run(True)
    assert trials[0] == {"train.lr": 0.01, "train.optimizer": "adam", "train.batch_size": 32}
    assert trials[0] not in trials[1:] and len(trials) == 6
    assert run(True) == trials
    assert run(False)[0] != trials[0]
