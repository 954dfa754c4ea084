"""Chapter 3 (higher-order gradients): exercises 3.1 `fourth_derivative` and 3.2 `hvp`."""
import math

import numpy as np

import minigrad as mg


# ----------------------------------------------------------------------------- 3.1 fourth_derivative
def nth_derivative(f, x, n):
    """d^n f / dx^n at a scalar x: n calls of mg.grad, each with create_graph=True so
    that the gradient it returns has a graph of its own to differentiate again."""
    y = f(x)
    for _ in range(n):
        (y,) = mg.grad(y, x, create_graph=True)
    return y


def test_fourth_derivative_of_sin_is_sin():
    for v in (-1.3, 0.0, 0.4, 2.5):
        x = mg.tensor(v, dtype="float64", requires_grad=True)
        got = [nth_derivative(mg.sin, x, n).item() for n in (1, 2, 3, 4)]
        want = [math.cos(v), -math.sin(v), -math.cos(v), math.sin(v)]
        assert np.allclose(got, want, rtol=0, atol=1e-12), v


def test_fourth_derivative_helper_gives_third_of_tanh():
    v = 0.3
    x = mg.tensor(v, dtype="float64", requires_grad=True)
    t = math.tanh(v)                              # (tanh)''' = -2 (1 - t^2)(1 - 3 t^2)
    assert abs(nth_derivative(mg.tanh, x, 3).item() - (-2 * (1 - t * t) * (1 - 3 * t * t))) < 1e-12


# ----------------------------------------------------------------------------- 3.2 hvp
def hvp(f, x, v):
    """Hessian-vector product H v of a scalar f at x without forming H:
    g = df/dx with create_graph=True, then d<g, v>/dx = H v (H is symmetric)."""
    (g,) = mg.grad(f(x), x, create_graph=True)
    (hv,) = mg.grad((g * v).sum(), x)
    return hv


def _f(x):
    return (x.sin() * x).sum() + (x * x * x).sum() * 0.1


def test_hvp_against_finite_differences_of_the_gradient():
    mg.manual_seed(0)
    x0, v = mg.randn(6, dtype="float64"), mg.randn(6, dtype="float64")
    x = x0.detach().requires_grad_(True)
    got = hvp(_f, x, v).numpy()
    eps = 1e-5

    def grad_at(arr):
        t = mg.tensor(arr, dtype="float64", requires_grad=True)
        (g,) = mg.grad(_f(t), t)
        return g.numpy()
    fd = (grad_at(x0.numpy() + eps * v.numpy()) - grad_at(x0.numpy() - eps * v.numpy())) / (2 * eps)
    assert np.allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_hvp_of_a_quadratic_is_the_symmetrised_matrix():
    mg.manual_seed(1)
    A, v = mg.randn(4, 4, dtype="float64"), mg.randn(4, dtype="float64")
    x = mg.randn(4, dtype="float64", requires_grad=True)
    got = hvp(lambda t: (t @ A @ t), x, v).numpy()      # H = A + A^T
    assert np.allclose(got, (A.numpy() + A.numpy().T) @ v.numpy(), rtol=0, atol=1e-12)
