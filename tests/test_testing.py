"""minigrad.testing, the public harness: its documented example runs, it passes a
right Function and catches wrong ones, naming the check and the backend."""
import doctest

import numpy as np  # host-side: references
import pytest

import minigrad as mg
import minigrad.testing
from minigrad.testing import CheckFailed, check_function, strategies as S


class Cube(mg.Function):
    def forward(self, x):
        return x * x * x

    def backward(self, gy):
        x, = self.inputs
        return gy * 3.0 * x * x


def test_the_documented_example_runs_and_catches_the_wrong_backward():
    failed, attempted = doctest.testmod(minigrad.testing, optionflags=doctest.ELLIPSIS)
    assert attempted >= 6 and failed == 0


def test_a_right_function_passes_on_every_backend():
    assert check_function(lambda x: Cube.apply(x), lambda x: x ** 3, S.unary(), max_examples=5)


def test_a_backward_that_ignores_the_upstream_gradient_fails():
    class IgnoresGy(Cube):
        def backward(self, gy):
            x, = self.inputs
            return 3.0 * x * x

    with pytest.raises(CheckFailed, match=r"gradcheck failed on backend 'numpy'"):
        check_function(lambda x: IgnoresGy.apply(x), lambda x: x ** 3, S.unary(),
                       gradgrad=False)


def test_a_wrong_forward_fails_the_forward_check():
    with pytest.raises(CheckFailed, match=r"forward failed on backend 'numpy'"):
        check_function(lambda x: Cube.apply(x), lambda x: x ** 3 + 1e-6, S.unary())


def test_a_backward_that_is_not_differentiable_fails_gradgradcheck():
    class RawBackward(Cube):
        def backward(self, gy):      # right first derivative, but built outside the graph
            x, = self.inputs
            return mg.tensor(gy.numpy() * 3.0 * x.numpy() ** 2, dtype="float64")

    check_function(lambda x: RawBackward.apply(x), lambda x: x ** 3, S.unary(), gradgrad=False)
    with pytest.raises(CheckFailed, match=r"gradgradcheck failed"):
        check_function(lambda x: RawBackward.apply(x), lambda x: x ** 3, S.unary())


def test_binary_cases_with_broadcasting_and_reuse():
    seen_same, seen_broadcast = [], []

    def mul(a, b):
        seen_same.append(a is b)
        seen_broadcast.append(a.shape != b.shape)
        return a * b

    check_function(mul, np.multiply, S.binary(), backends=["numpy"], max_examples=40)
    assert any(seen_same) and any(seen_broadcast)
