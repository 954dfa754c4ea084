"""Chapter 2 (ops and broadcasting): exercises 2.1 `affine` and 2.2 `repeated_index`."""
import numpy as np

import minigrad as mg
from minigrad.ops import sum_to


# ----------------------------------------------------------------------------- 2.1 affine
class Affine(mg.Function):
    """y = x @ W + b, with x (N, I), W (I, O) and b broadcast from (O,) or (1, O).
    dx = gy @ W^T;  dW = x^T @ gy;  db = gy summed back to b's shape (sum_to)."""

    def forward(self, x, w, b):
        return self.xp.matmul(x, w) + b

    def backward(self, gy):
        x, w, b = self.inputs
        return gy @ w.transpose(), x.transpose() @ gy, sum_to(gy, b.shape)


def test_affine_forward():
    x, w, b = (mg.randn(*s, dtype="float64") for s in ((4, 3), (3, 2), (2,)))
    want = x.numpy() @ w.numpy() + b.numpy()
    assert np.allclose(Affine.apply(x, w, b).numpy(), want, rtol=0, atol=1e-12)


def test_affine_gradcheck_vector_bias():
    x, w, b = (mg.randn(*s, dtype="float64", requires_grad=True) for s in ((4, 3), (3, 2), (2,)))
    assert mg.gradcheck(lambda x, w, b: Affine.apply(x, w, b), [x, w, b])


def test_affine_gradcheck_row_bias_and_second_order():
    x, w, b = (mg.randn(*s, dtype="float64", requires_grad=True) for s in ((5, 2), (2, 3), (1, 3)))
    assert mg.gradcheck(lambda x, w, b: Affine.apply(x, w, b), [x, w, b])
    assert mg.gradgradcheck(lambda x, w, b: Affine.apply(x, w, b) ** 2, [x, w, b])


# ----------------------------------------------------------------------------- 2.2 repeated_index
def predicted_index_grad(n, index, weights):
    """Gradient of sum_k weights[k] * v[index[k]] with respect to v (length n): each
    position gets the sum of the weights of every k that picked it (IndexAdd adds)."""
    g = [0.0] * n
    for i, wgt in zip(index, weights):
        g[i] += wgt
    return g


def test_repeated_index():
    index, weights = [3, 0, 3, 3, 1], [1.0, 2.0, -1.0, 0.5, 4.0]
    v = mg.randn(5, dtype="float64", requires_grad=True)
    (v[mg.tensor(index)] * mg.tensor(weights, dtype="float64")).sum().backward()
    assert v.grad.numpy().tolist() == predicted_index_grad(5, index, weights)
