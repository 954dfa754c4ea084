"""Chapter 5 (nn and optim): exercises 5.1 `adam` and 5.2 `module`."""
import math

import numpy as np

import minigrad as mg
from minigrad import nn, optim


# ----------------------------------------------------------------------------- 5.1 adam
def adam_steps(p, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (Kingma & Ba, Algorithm 1) on NumPy arrays, as three lines per step."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


def test_adam_matches_optim_adam():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) * (t + 1) for t in range(20)]
    w = nn.Parameter(mg.tensor(p0))
    opt = optim.Adam([w], lr=0.01, betas=(0.8, 0.99))
    for g in grads:
        w.grad = mg.tensor(g)
        opt.step()
    assert np.allclose(w.numpy(), adam_steps(p0, grads, 0.01, 0.8, 0.99), rtol=1e-12, atol=1e-14)


def test_adam_first_step_is_lr_times_sign():
    got = adam_steps(np.array([1.0, -2.0, 3.0]), [np.array([0.5, -7.0, 1e-3])], lr=0.1)
    assert np.allclose(got, [0.9, -1.9, 2.9], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- 5.2 module
class TwoLayer(nn.Module):
    """x -> fc1 -> ReLU -> fc2: attribute assignment registers the children, so the
    parameters are named fc1.weight, fc1.bias, fc2.weight, fc2.bias, as in PyTorch."""

    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def test_module_names_and_shapes():
    m = TwoLayer(3, 5, 2)
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == [
        ("fc1.weight", (5, 3)), ("fc1.bias", (5,)), ("fc2.weight", (2, 5)), ("fc2.bias", (2,))]


def test_module_forward_and_init():
    mg.manual_seed(0)
    m = TwoLayer(3, 5, 2)
    sd = {k: v.numpy().astype(np.float64) for k, v in m.state_dict().items()}
    bound = 1 / math.sqrt(3)                    # PyTorch's Linear init: U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(sd["fc1.weight"]).max() <= bound and np.abs(sd["fc1.bias"]).max() <= bound
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    want = np.maximum(x @ sd["fc1.weight"].T + sd["fc1.bias"], 0) @ sd["fc2.weight"].T + sd["fc2.bias"]
    assert np.allclose(m(mg.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)
