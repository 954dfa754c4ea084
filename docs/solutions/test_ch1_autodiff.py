"""Chapter 1 (the chain rule): exercises 1.1 `hand` and 1.2 `sin`."""
import math

import minigrad as mg


# ----------------------------------------------------------------------------- 1.1 hand
def hand_gradients(x, w, b):
    """L = sigmoid(w*x + b) worked by hand, node by node, for floats.
    Forward: a = w*x, z = a + b, L = s = sigmoid(z). Backward (reverse order):
    dL/dz = s(1 - s); dL/da = dL/dz (Add passes it on); dL/db = dL/dz;
    dL/dw = dL/da * x; dL/dx = dL/da * w."""
    s = 1.0 / (1.0 + math.exp(-(w * x + b)))
    gz = s * (1.0 - s)
    return {"L": s, "x": gz * w, "w": gz * x, "b": gz}


def test_hand_matches_minigrad():
    vals = {"x": 1.5, "w": -0.8, "b": 0.3}
    t = {k: mg.tensor(v, dtype="float64", requires_grad=True) for k, v in vals.items()}
    L = (t["w"] * t["x"] + t["b"]).sigmoid()
    L.backward()
    want = hand_gradients(**vals)
    assert abs(L.item() - want["L"]) < 1e-12
    for k in vals:
        assert abs(t[k].grad.item() - want[k]) < 1e-12, k


def test_hand_matches_finite_differences():
    vals, eps = {"x": 1.5, "w": -0.8, "b": 0.3}, 1e-6
    want = hand_gradients(**vals)
    for k in vals:
        up, down = dict(vals), dict(vals)
        up[k] += eps
        down[k] -= eps
        fd = (hand_gradients(**up)["L"] - hand_gradients(**down)["L"]) / (2 * eps)
        assert abs(fd - want[k]) < 1e-8, k


# ----------------------------------------------------------------------------- 1.2 sin
class MySin(mg.Function):
    """y = sin(x);  dx = gy * cos(x). The backward is written with Tensor ops
    (mg.cos, *), so it can itself be differentiated."""

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        (x,) = self.inputs
        return gy * mg.cos(x)


def my_sin(x):
    return MySin.apply(x)


def test_sin_forward_matches_math():
    xs = [-2.0, -0.5, 0.0, 1.0, 3.0]
    y = my_sin(mg.tensor(xs, dtype="float64"))
    assert all(abs(a - math.sin(b)) < 1e-15 for a, b in zip(y.numpy().tolist(), xs))


def test_sin_gradcheck():
    x = mg.randn(3, 4, dtype="float64", requires_grad=True)
    assert mg.gradcheck(my_sin, [x])                   # against central differences


def test_sin_gradgradcheck():
    x = mg.randn(5, dtype="float64", requires_grad=True)
    assert mg.gradgradcheck(my_sin, [x])               # the backward is differentiable


def test_sin_reused_input_accumulates():
    x = mg.tensor(0.7, dtype="float64", requires_grad=True)
    (my_sin(x) * my_sin(x)).backward()                 # d sin^2 / dx = 2 sin cos
    assert abs(x.grad.item() - 2 * math.sin(0.7) * math.cos(0.7)) < 1e-12
