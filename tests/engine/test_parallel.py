"""Shards, threads and the reordered activation/max-pool pairs change speed, never results."""
import warnings

import numpy as np
import pytest

from engine import Trainer, apply_overrides, get_preset
from engine import runtime
from engine.gradcheck import rel_error
from engine.layers import Dropout
from engine.model import MIN_SHARD, Model, _Overwrite, _PoolFirst

CNN = [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1},
       {"type": "relu"}, {"type": "maxpool2d", "pool_size": 2},
       {"type": "conv2d", "filters": 6, "kernel_size": 3},
       {"type": "leaky_relu", "alpha": 0.1}, {"type": "maxpool2d", "pool_size": 2},
       {"type": "flatten"}, {"type": "dense", "units": 10}]


def tied_images(n, rng, dtype):
    """Images with a flat background and flat blocks: every max-pool window ties somewhere."""
    x = np.zeros((n, 12, 12, 1), dtype)
    for i in range(n):
        r, c = rng.integers(0, 8, 2)
        x[i, r:r + 4, c:c + 4, 0] = rng.choice([0.5, 1.0])
    return x


def grads(model, x, y):
    model.zero_grad()
    loss, out = model.loss_and_grad(x, y)
    return loss, out, [p.grad.copy() for p in model.params]


def assert_same_step(model, x, y, loss, out, g):
    """The model run in the written layer order (no reordering, no overwriting: layers
    called directly never write over their input) gives exactly ``loss``, ``out`` and
    gradients ``g``."""
    model._plan, model._plan_for = list(model.layers), tuple(map(id, model.layers))
    loss2, out2, g2 = grads(model, x, y)
    assert loss == loss2
    np.testing.assert_array_equal(out, out2)
    for a, b in zip(g, g2):
        np.testing.assert_array_equal(a, b)


def test_pool_first_pairs_are_planned():
    model = Model(CNN, input_shape=(12, 12, 1))
    kinds = [type(step).__name__ for step in model.plan]
    assert kinds == ["Conv2D", "_PoolFirst", "Conv2D", "_PoolFirst", "Flatten", "Dense"]
    # a pair split by another layer is left alone
    other = Model([{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "relu"},
                   {"type": "dropout", "rate": 0.1}, {"type": "maxpool2d"}, {"type": "flatten"},
                   {"type": "dense", "units": 10}], input_shape=(12, 12, 1))
    assert not any(isinstance(step, _PoolFirst) for step in other.plan)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pool_first_equals_the_written_order_with_ties(dtype):
    """Outputs and every gradient equal those of the layers run in their written order."""
    rng = np.random.default_rng(3)
    x = tied_images(8, rng, dtype) - 0.25        # negative background: relu ties at zero
    y = rng.integers(0, 10, 8)
    model = Model(CNN, input_shape=(12, 12, 1), dtype=dtype, seed=1)
    loss, out, g = grads(model, x, y)
    assert_same_step(model, x, y, loss, out, g)


def test_shards_only_for_big_conv_batches():
    cnn = Model(CNN, input_shape=(12, 12, 1))
    assert cnn.shard_bounds(2 * MIN_SHARD - 1) == [(0, 2 * MIN_SHARD - 1)]
    assert cnn.shard_bounds(65) == [(0, 32), (32, 65)]
    assert cnn.shard_bounds(64) == [(0, 32), (32, 64)]
    assert cnn.shard_bounds(128) == [(0, 32), (32, 64), (64, 96), (96, 128)]
    assert cnn.shard_bounds(100) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    mlp = Model([{"type": "flatten"}, {"type": "dense", "units": 10}], input_shape=(12, 12, 1))
    assert mlp.shard_bounds(256) == [(0, 256)]
    bn = Model([{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "batchnorm"},
                {"type": "flatten"}, {"type": "dense", "units": 10}], input_shape=(12, 12, 1))
    assert bn.shard_bounds(256) == [(0, 256)]   # batch statistics must see the whole batch


@pytest.mark.parametrize("threads,n,shards", [(1, 37, 2), (2, 37, 2), (2, 130, 4), (3, 130, 4)])
def test_sharded_step_is_the_full_batch_step(threads, n, shards):
    """Shards (odd batch: unequal ones; more threads than runs of shards divide evenly)
    give the full batch's loss, output and mean gradient, in float64 to rounding."""
    rng = np.random.default_rng(0)
    x, y = tied_images(n, rng, "float64"), rng.integers(0, 10, n)
    sharded = Model(CNN, input_shape=(12, 12, 1), dtype="float64", seed=2, threads=threads)
    whole = Model(CNN, input_shape=(12, 12, 1), dtype="float64", seed=2)
    whole.shardable = False
    assert len(sharded.shard_bounds(n)) == shards
    loss, out, g = grads(sharded, x, y)
    loss2, out2, g2 = grads(whole, x, y)
    assert abs(loss - loss2) < 1e-12
    np.testing.assert_allclose(out, out2, rtol=0, atol=1e-12)
    for p, a, b in zip(sharded.params, g, g2):
        assert rel_error(a, b) < 1e-12, p.name
    # gradients accumulate like the unsharded path: a second call without zero_grad doubles
    sharded.loss_and_grad(x, y)
    for p, a in zip(sharded.params, g):
        np.testing.assert_allclose(p.grad, 2 * a, rtol=1e-12, atol=1e-15)


def test_sharded_gradient_matches_numerical_gradient():
    """The sharded path against a central-difference gradient of the whole batch's loss."""
    rng = np.random.default_rng(1)
    n = 2 * MIN_SHARD
    x, y = tied_images(n, rng, "float64") + 0.01 * rng.random((n, 12, 12, 1)), rng.integers(0, 10, n)
    model = Model(CNN, input_shape=(12, 12, 1), dtype="float64", seed=4, threads=2)
    _, _, g = grads(model, x, y)
    for p, analytic in zip(model.params, g):
        flat = p.value.reshape(-1)
        for idx in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[idx]
            flat[idx] = old + 1e-6
            up = model.loss_fn(model.forward(x), y)[0]
            flat[idx] = old - 1e-6
            down = model.loss_fn(model.forward(x), y)[0]
            flat[idx] = old
            num = (up - down) / 2e-6
            a = analytic.reshape(-1)[idx]
            assert abs(num - a) <= 1e-6 * max(1.0, abs(num), abs(a)), (p.name, idx, num, a)


def conv_run(threads, **over):
    base = {"train_limit": 256, "test_limit": 128, "iterations": 6, "batch_size": 64,
            "eval_every": 0, "eval_train_size": 64}
    base.update(over)
    cfg = apply_overrides(get_preset("grokking-cnn"), base)   # conv, tanh, dropout 0.5
    events = []
    done = Trainer(cfg, emit=events.append, threads=threads).run()
    return [e.loss for e in events if e.type == "progress"], done


def test_same_seed_same_curve_whatever_the_thread_count():
    one, done1 = conv_run(1)
    two, done2 = conv_run(2)
    assert len(one) == 6
    np.testing.assert_allclose(one, two, rtol=1e-6)
    assert done1["test_accuracy"] == done2["test_accuracy"]
    other, _ = conv_run(2, seed=7)
    assert other != two


def test_sharded_divergence_is_reported_without_warnings():
    """Overflow inside the second shard's thread is silenced as in the caller (the trainer's
    errstate is per thread) and the run ends as diverged."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, done = conv_run(2, lr=1e9, iterations=40)
    assert done["status"] == "diverged"


def test_dropout_masks_from_random_bits():
    layer = Dropout(0.25)
    layer.rng = np.random.default_rng(5)
    x = np.ones((400, 500), np.float32)
    out = layer.forward(x, train=True)
    assert out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out > 0).mean() - 0.75) < 0.005
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), out)
    assert layer.forward(x, train=False) is x
    again = Dropout(0.25)
    again.rng = np.random.default_rng(5)
    np.testing.assert_array_equal(again.forward(x, train=True), out)   # seeded: repeatable


def test_default_threads_from_the_environment(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    assert runtime.default_threads() == 1
    monkeypatch.setenv(runtime.THREADS_ENV, "2")
    assert runtime.default_threads() == 2
    monkeypatch.setenv(runtime.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=runtime.THREADS_ENV):
        runtime.default_threads()


def test_single_threaded_blas_restores_the_pool():
    if not runtime.can_limit_blas():
        pytest.skip("threadpoolctl not installed")
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with runtime.single_threaded_blas():
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


MIXED = [{"type": "tanh"},                                   # first: must not touch the input
         {"type": "conv2d", "filters": 3, "kernel_size": 3}, {"type": "tanh"},
         {"type": "relu"},                                   # after tanh: may not overwrite
         {"type": "conv2d", "filters": 4, "kernel_size": 3}, {"type": "sigmoid"},
         {"type": "avgpool2d"}, {"type": "relu"},
         {"type": "flatten"}, {"type": "dense", "units": 12}, {"type": "relu"},
         {"type": "dense", "units": 10}]


def test_activations_overwrite_only_fresh_outputs():
    """Activations after Conv2D/Dense/pooling write over their input; the results (outputs,
    every gradient, the caller's input) are those of the written order with new arrays."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 12, 12, 1))
    x_before = x.copy()
    y = rng.integers(0, 10, 6)
    model = Model(MIXED, input_shape=(12, 12, 1), dtype="float64", seed=3)
    steps = [type(step).__name__ for step in model.plan]
    assert steps == ["Tanh", "Conv2D", "_Overwrite", "ReLU", "Conv2D", "_Overwrite", "AvgPool2D",
                     "_Overwrite", "Flatten", "Dense", "_Overwrite", "Dense"]
    assert [step.act for step in model.plan if isinstance(step, _Overwrite)] == \
        [model.layers[i] for i in (2, 5, 7, 10)]
    loss, out, g = grads(model, x, y)
    np.testing.assert_array_equal(x, x_before)
    fmaps = model.feature_maps(x)
    np.testing.assert_array_equal(x, x_before)
    assert_same_step(model, x, y, loss, out, g)
    np.testing.assert_array_equal(fmaps, model.feature_maps(x))


CONV_DENSE = [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "flatten"},
              {"type": "dense", "units": 10}]


@pytest.mark.parametrize("first", [[{"type": "relu"}],
                                   [{"type": "dropout", "rate": 0.5}, {"type": "relu"}]],
                         ids=["relu-first", "dropout-first"])
def test_feature_maps_never_write_over_the_input(first):
    """An activation -> max-pool pair at the start runs the activation over the pool's
    output in the plan; feature_maps calls the layers in their written order, where the
    activation gets the caller's array (directly, or through dropout, the identity in
    evaluation). It must leave it alone, before and after the plan is first used."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 12, 12, 1))            # negative values: relu would change them
    x_before = x.copy()
    model = Model(first + [{"type": "maxpool2d"}] + CONV_DENSE, input_shape=(12, 12, 1),
                  dtype="float64", seed=2)
    before = model.feature_maps(x)
    np.testing.assert_array_equal(x, x_before)
    state = [dict(vars(la)) for la in model.layers]
    assert any(isinstance(step, _PoolFirst) for step in model.plan)
    assert [dict(vars(la)) for la in model.layers] == state       # the getter changes nothing
    model.forward(x)
    grads(model, x, rng.integers(0, 10, 3))
    np.testing.assert_array_equal(x, x_before)
    after = model.feature_maps(x)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(after, before)


def test_activations_called_directly_never_write_over_their_input():
    from engine.layers import LAYER_TYPES
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2))
    for kind, cls in LAYER_TYPES.items():
        if cls.is_activation:
            layer, x_in = cls(), x.copy()
            for train in (True, False):
                layer.forward(x_in, train)
                np.testing.assert_array_equal(x_in, x, err_msg=kind)


def test_evaluation_in_threads_is_the_same():
    rng = np.random.default_rng(2)
    x = (rng.random((700, 12, 12, 1)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 700)
    results = []
    for threads in (1, 2, 3):
        model = Model(CNN, input_shape=(12, 12, 1), seed=5, threads=threads)
        results.append(model.evaluate(x, y, batch_size=64, scale=1 / 255))
    for r in results[1:]:
        assert r["loss"] == results[0]["loss"]
        assert r["accuracy"] == results[0]["accuracy"]
        np.testing.assert_array_equal(r["predictions"], results[0]["predictions"])
    assert 0 <= results[0]["accuracy"] <= 1 and np.isfinite(results[0]["loss"])
