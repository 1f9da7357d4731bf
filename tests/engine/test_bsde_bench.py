"""The Deep BSDE benchmark's PyTorch port computes what the engine computes: with the engine's
weights copied in, the same loss and gradients on the same paths (else its timings compare
different work). Skipped without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.bench_bsde import TorchPort, check_port, engine_steps, make_solver  # noqa: E402


@pytest.mark.parametrize("name", ["bsde-hjb-d10", "bsde-allen-cahn"])
def test_the_torch_port_gives_the_engines_loss_and_gradients(name):
    c = check_port(name, warm_steps=3, batch=32)
    assert c["loss_diff"] < 1e-10
    assert c["u0_grad_diff"] < 1e-8 and c["z0_grad_diff"] < 1e-8
    assert abs(c["u0_grad"]) > 1e-3                  # a gradient that carries information
    assert c["max_grad_diff"] < 1e-8 * c["max_grad"]  # every subnet parameter too


def test_the_check_catches_a_port_that_differs():
    """Zero one subnet's last batchnorm shift in the port only: the loss no longer agrees."""
    solver = make_solver("bsde-hjb-d10")
    engine_steps(solver, 3, np.random.default_rng(0))
    port = TorchPort(solver.eq, solver.config["y_init_range"])
    port.load_from(solver.net)
    with torch.no_grad():
        port.subnets[5][-1].bias.add_(0.5)
    dw, x = solver.eq.sample(32, np.random.default_rng(1))
    solver.net.zero_grad()
    loss = solver.net.loss_and_grad(dw, x)
    assert abs(loss - port.loss(torch.from_numpy(dw), torch.from_numpy(x)).item()) > 1e-6
