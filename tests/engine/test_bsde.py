"""Deep BSDE: the global network's gradient against a float64 numerical one (u0, z0, every
subnet's parameters, batchnorm included), a wrong backward caught, the config's errors with
their loc, and the fast preset reaching its figure."""
import numpy as np
import pytest

from engine import bsde
from engine.bsde import BSDE_PRESETS, EQUATIONS, BsdeSolver, GlobalNetwork, validate_bsde
from engine.spec import SpecError


def numeric_check(net, dw, x, n_per_param=6, eps=1e-5, seed=0):
    """Worst relative error between the analytic and the central-difference gradient over a
    sample of entries of every parameter."""
    rng = np.random.default_rng(seed)
    net.zero_grad()
    net.loss_and_grad(dw, x)
    worst = 0.0
    for p in net.params:
        flat, grad = p.value.reshape(-1), p.grad.reshape(-1).copy()
        for j in rng.choice(flat.size, min(n_per_param, flat.size), replace=False):
            old = flat[j]
            flat[j] = old + eps
            up = net.forward(dw, x, train=True)[0]
            flat[j] = old - eps
            down = net.forward(dw, x, train=True)[0]
            flat[j] = old
            num = (up - down) / (2 * eps)
            # an entry whose gradient is exactly 0 (a bias or beta right before a batchnorm)
            # differences to ~1e-11 of rounding: the 1e-4 floor keeps that from counting
            worst = max(worst, abs(num - grad[j]) / max(1e-4, abs(num) + abs(grad[j])))
    return worst


@pytest.mark.parametrize("name", list(EQUATIONS))
@pytest.mark.parametrize("subnet", ["reference", "tanh"])
def test_the_global_networks_gradient_matches_a_numerical_one(name, subnet):
    cls = EQUATIONS[name]
    # default risk starts at 100: its loss of ~6,500 would leave central differences ~3e-8 of
    # rounding noise, as large as a saturated tanh's gradients; at 1 the check is sharp
    params = {"x0": 1.0} if name == "default_risk" else {}
    eq = cls(3, 0.5, 4, **params)
    cfg = validate_bsde({"equation": {"name": name, "dim": 3, "total_time": 0.5,
                                      "num_time_interval": 4, **params}, "subnet": subnet})
    net = GlobalNetwork(eq, cfg["subnet"], [0.3, 0.5], seed=1)
    dw, x = eq.sample(16, np.random.default_rng(3))
    assert numeric_check(net, dw, x) < 1e-5


def test_a_wrong_backward_is_caught(monkeypatch):
    eq = EQUATIONS["allen_cahn"](3, 0.5, 4)
    cfg = validate_bsde({"equation": {"name": "allen_cahn", "dim": 3, "total_time": 0.5,
                                      "num_time_interval": 4}})
    net = GlobalNetwork(eq, cfg["subnet"], [0.3, 0.5], seed=1)
    dw, x = eq.sample(16, np.random.default_rng(3))
    real = eq.f
    monkeypatch.setattr(eq, "f", lambda t, x, y, z: (lambda r: (r[0], 0 * r[1], r[2]))(real(t, x, y, z)))
    assert numeric_check(net, dw, x) > 1e-3     # df/dy dropped from the backward only


@pytest.mark.parametrize("raw, loc, words", [
    ({"equation": {"name": "nope", "dim": 3, "total_time": 1, "num_time_interval": 4}},
     ["equation", "name"], "unknown equation"),
    ({"equation": {"name": "hjb_lq", "dim": 0, "total_time": 1, "num_time_interval": 4}},
     ["equation", "dim"], "integer from 1"),
    ({"equation": {"name": "hjb_lq", "dim": 1_000_000, "total_time": 1, "num_time_interval": 4}},
     ["equation", "dim"], "integer from 1"),
    ({"equation": {"name": "hjb_lq", "dim": 5000, "total_time": 1, "num_time_interval": 100}},
     ["equation", "dim"], "GiB"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1, "num_time_interval": 0}},
     ["equation", "num_time_interval"], "integer from 1"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 0, "num_time_interval": 4}},
     ["equation", "total_time"], "above 0"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1, "num_time_interval": 4},
      "y_init_range": [2, 1]}, ["y_init_range"], "above high"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1, "num_time_interval": 4},
      "subnet": [{"type": "dense", "units": 5}]}, ["subnet"], "must end in 3 units"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1, "num_time_interval": 4},
      "train": {"iterations": 10**9}}, ["train", "iterations"], "integer from 1"),
    ({"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1, "num_time_interval": 4},
      "dataset": {"name": "mnist"}}, ["dataset"], "image-task field"),
])
def test_bad_configs_name_the_field(raw, loc, words):
    with pytest.raises(SpecError) as e:
        validate_bsde(raw)
    hit = [x for x in e.value.errors if x["loc"] == loc]
    assert hit and words in hit[0]["msg"], e.value.errors


def test_the_fast_preset_learns_z():
    """bsde-hjb-d10: u(0,0) = 2.157022 within 2%, and a validation loss below 0.06 (z = 0
    gives 2.259349 with loss 0.194: a network that did not learn z fails the loss)."""
    p = BSDE_PRESETS["bsde-hjb-d10"]
    done = BsdeSolver(p["config"]).run()
    t = p["target"]
    assert abs(done["u0"] - t["u0"]) / t["u0"] < t["band"], done
    assert done["valid_loss"] < t["valid_loss_below"], done


@pytest.mark.parametrize("subnet", ["reference", "tanh"])
def test_the_batched_subnets_give_the_per_step_numbers(subnet):
    """All N - 1 subnets stacked into one set of layers (batched matrix products) give the
    loss and every gradient of the subnets called one by one, bit for bit."""
    eq = EQUATIONS["hjb_lq"](5, 0.5, 6)
    cfg = validate_bsde({"equation": {"name": "hjb_lq", "dim": 5, "total_time": 0.5,
                                      "num_time_interval": 6}, "subnet": subnet})
    a = GlobalNetwork(eq, cfg["subnet"], [0.3, 0.5], seed=1, batched=True)
    b = GlobalNetwork(eq, cfg["subnet"], [0.3, 0.5], seed=1, batched=False)
    dw, x = eq.sample(32, np.random.default_rng(3))
    assert a.loss_and_grad(dw, x) == b.loss_and_grad(dw, x)
    per_step = [b.u0.grad, b.z0.grad] + [np.stack([m.params[k].grad for m in b.subnets])
                                         for k in range(len(b.subnets[0].params))]
    assert len(per_step) == len(a.params)
    for p, g in zip(a.params, per_step):
        assert np.array_equal(p.grad.reshape(g.shape), g), p.name
    # and the batchnorm running statistics move the same way
    if subnet == "reference":
        assert np.array_equal(a.layers[0].running_mean[:, 0],
                              np.stack([m.layers[0].running_mean for m in b.subnets]))


@pytest.mark.slow
def test_the_closed_form_preset_reaches_sin_1():
    """bsde-quadratic-d10: u(0, 0) = sin(1) exactly; within 1%, and a validation loss clearly
    below the z = 0 one (0.00908 on its validation paths), with u(t, X_t) on the sample paths
    close to the closed form. ~30 s."""
    p = BSDE_PRESETS["bsde-quadratic-d10"]
    events = []
    done = BsdeSolver(p["config"], emit=events.append).run()
    t = p["target"]
    assert abs(done["u0"] - np.sin(1.0)) / np.sin(1.0) < t["band"], done
    assert done["valid_loss"] < t["valid_loss_below"] < done["z0_loss"], done
    snap = [e for e in events if e.type == "bsde_snapshot"][-1]
    err = np.abs(np.array(snap.paths) - np.array(snap.exact_paths))
    assert err.max() < 0.1 and err.mean() < 0.03, err.max()


def test_the_reference_piecewise_constant_schedule():
    """lr_boundaries [b] and lr_values [v0, v1]: v0 for the steps up to b, v1 after (as
    TensorFlow's PiecewiseConstantDecay counts them), followed by live lr changes."""
    cfg = {"equation": {"name": "hjb_lq", "dim": 3, "total_time": 1.0, "num_time_interval": 4},
           "train": {"lr": 0.01, "iterations": 6, "lr_boundaries": [3], "lr_values": [0.01, 0.001]}}
    events = []
    BsdeSolver(cfg, emit=events.append).run()
    assert [e.lr for e in events if e.type == "progress"] == [0.01] * 4 + [0.001] * 2
    for train, loc in (({"lr_boundaries": [3], "lr_values": [0.01]}, "lr_values"),
                       ({"lr_boundaries": [3, 2], "lr_values": [1, 1, 1]}, "lr_boundaries"),
                       ({"lr_values": [0.1, 0.01]}, "lr_boundaries"),
                       ({"lr_boundaries": [3], "lr_values": [0.01, -1]}, "lr_values")):
        with pytest.raises(SpecError) as e:
            validate_bsde({**cfg, "train": train})
        assert e.value.errors[0]["loc"] == ["train", loc], (train, e.value.errors)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bsde-hjb", "bsde-allen-cahn"])
def test_the_d100_presets_land_u0_inside_their_band(name):
    """The paper's d = 100 configurations: u0 within the preset's band of the reference value
    (HJB 0.5% of 4.590162, Allen-Cahn 1% of 0.052802). Their validation-loss targets (below
    the z = 0 loss) are NOT met by this engine yet (benchmarks/README.md: 0.0230 vs 0.0220,
    1.16e-4 vs 2.99e-5), so they are not asserted here. ~1-2 min each."""
    p = BSDE_PRESETS[name]
    done = BsdeSolver(p["config"]).run()
    t = p["target"]
    assert done["relative_error"] < t["band"], done
